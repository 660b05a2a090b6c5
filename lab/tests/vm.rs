//! The VM tier, run as a test: one boot of a kernel with bonding, 802.1Q, dummy
//! links and bridge VLAN filtering runs every scenario; a failure inside the VM
//! fails this test. A missing qemu,
//! virtme-ng or kernel is a failure with the install command, never a pass.

use std::process::Command;

#[test]
fn vm_tier_scenarios_pass_in_a_kernel_with_bonding_and_vlans() {
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["vm", "run"])
        .output()
        .expect("running lab vm run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and on failure.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "lab vm run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // One line per scenario in lab/src/scenario/vm.rs (SCENARIOS).
    assert!(stdout.contains("vm: 10 passed, 0 failed"), "{stdout}");
    for line in stdout.lines().filter(|l| {
        l.contains("bond failover:") || l.contains("slave loss:") || l.contains("vm: done")
    }) {
        eprintln!("{line}");
    }
}
