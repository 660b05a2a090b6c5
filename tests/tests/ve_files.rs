//! The files vznet keeps inside a VE: /etc/hostname, the VE's line in
//! /etc/hosts, and /etc/resolv.conf's name servers and search domains, at
//! start and on `ve set`, the rest of each file kept; and never a write
//! through a link out of the VE's root.

mod common;
mod ve_harness;

use anyhow::Result;
use lab::Lab;
use ve_harness::runtime;

#[test]
fn start_and_set_write_hostname_hosts_and_resolv_conf_keeping_the_rest() -> Result<()> {
    let lab = Lab::new("ve_files")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    let file = rt.create(
        920,
        "nameservers = [\"10.60.0.53\"]\nsearch = [\"example.org\"]\n\
         [[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.60.0.92/24\"]\n",
    )?;
    // The template's own lines, which must stay.
    let root = rt.state.path().join("private/920");
    std::fs::write(
        root.join("etc/resolv.conf"),
        "# from the template\nnameserver 192.0.2.1\noptions ndots:2\n",
    )?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n10.9.9.9 db.example.org db\n",
    )?;
    let text = std::fs::read_to_string(&file)?
        .replace("hostname = \"ve920\"", "hostname = \"web.example.org\"");
    std::fs::write(&file, text)?;
    rt.start(920)?;
    let cat = |path: &str| rt.exec(920, &["/bin/cat", path]);
    assert_eq!(cat("/etc/hostname")?, "web.example.org\n");
    assert_eq!(rt.exec(920, &["/bin/hostname"])?.trim(), "web.example.org");
    assert_eq!(
        cat("/etc/hosts")?,
        "127.0.0.1 localhost\n10.9.9.9 db.example.org db\n\
         10.60.0.92\tweb.example.org web\t# vznet: this VE's name\n"
    );
    assert_eq!(
        cat("/etc/resolv.conf")?,
        "# from the template\nnameserver 10.60.0.53\noptions ndots:2\nsearch example.org\n"
    );

    // Live: files, UTS name, nothing saved.
    let file_before = std::fs::read_to_string(&file)?;
    let out = rt.ok(&[
        "ve",
        "set",
        "920",
        "--hostname",
        "www",
        "--nameserver",
        "10.60.0.54",
        "--nameserver",
        "10.60.0.55",
        "--searchdomain",
        "corp.example",
    ])?;
    assert!(out.contains("wrote /etc/resolv.conf in VE 920"), "{out}");
    assert_eq!(rt.exec(920, &["/bin/hostname"])?.trim(), "www");
    assert_eq!(cat("/etc/hostname")?, "www\n");
    assert_eq!(
        cat("/etc/hosts")?,
        "127.0.0.1 localhost\n10.9.9.9 db.example.org db\n\
         10.60.0.92\twww\t# vznet: this VE's name\n"
    );
    assert_eq!(
        cat("/etc/resolv.conf")?,
        "# from the template\nnameserver 10.60.0.54\nnameserver 10.60.0.55\n\
         options ndots:2\nsearch corp.example\n"
    );
    assert_eq!(std::fs::read_to_string(&file)?, file_before, "not saved");
    assert!(rt.ok(&["ve", "list", "-o", "hostname"])?.contains("www"));
    // A changed address moves the VE's hosts line with it.
    rt.ok(&["ve", "set", "920", "--ifname", "eth0", "--ipdel", "all"])?;
    rt.ok(&[
        "ve",
        "set",
        "920",
        "--ifname",
        "eth0",
        "--ipadd",
        "10.60.0.93/24",
    ])?;
    assert!(cat("/etc/hosts")?.ends_with("10.60.0.93\twww\t# vznet: this VE's name\n"));
    assert!(host.ping("10.60.0.93") && !host.ping("10.60.0.92"));

    // A restart forgets what was not saved, and the files follow the file.
    rt.ok(&["ve", "restart", "920"])?;
    assert_eq!(rt.exec(920, &["/bin/hostname"])?.trim(), "web.example.org");
    assert!(cat("/etc/resolv.conf")?.contains("nameserver 10.60.0.53\n"));
    assert!(host.ping("10.60.0.92"));

    // --save: the VE file too.
    rt.ok(&[
        "ve",
        "set",
        "920",
        "--searchdomain",
        "a.example",
        "--searchdomain",
        "b.example",
        "--save",
    ])?;
    assert!(std::fs::read_to_string(&file)?.contains("search = [\"a.example\", \"b.example\"]"));
    assert!(cat("/etc/resolv.conf")?.ends_with("search a.example b.example\n"));

    // Bad names: exit 2, nothing changed.
    let before = cat("/etc/resolv.conf")?;
    for (arg, value, want) in [
        ("--hostname", "bad_name", "--hostname"),
        ("--searchdomain", "a..example", "--searchdomain"),
    ] {
        let (code, _, err) = rt.run(&["ve", "set", "920", arg, value])?;
        assert!(code == 2 && err.contains(want), "{arg}: {err}");
    }
    let (code, _, err) = rt.run(&[
        "ve",
        "set",
        "920",
        "--nameserver",
        "10.0.0.1",
        "--nameserver",
        "10.0.0.2",
        "--nameserver",
        "10.0.0.3",
        "--nameserver",
        "10.0.0.4",
    ])?;
    assert!(code == 2 && err.contains("4 name servers"), "{err}");
    assert_eq!(cat("/etc/resolv.conf")?, before);
    Ok(())
}

#[test]
fn links_in_the_ves_root_never_lead_a_write_out_of_it() -> Result<()> {
    let lab = Lab::new("ve_files_links")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.create(925, "nameservers = [\"10.60.0.53\"]\n")?;
    // The VE's resolv.conf and hosts are links to files of the host (by
    // absolute path, as a hostile VE could make them).
    let outside = tempfile::tempdir()?;
    let secret = outside.path().join("resolv.conf");
    std::fs::write(&secret, "nameserver 192.0.2.99\n")?;
    let hosts = outside.path().join("hosts");
    std::fs::write(&hosts, "192.0.2.1 host\n")?;
    let root = rt.state.path().join("private/925");
    std::fs::remove_file(root.join("etc/hosts"))?;
    std::os::unix::fs::symlink(&secret, root.join("etc/resolv.conf"))?;
    std::os::unix::fs::symlink(&hosts, root.join("etc/hosts"))?;
    rt.start(925)?;
    assert_eq!(std::fs::read_to_string(&secret)?, "nameserver 192.0.2.99\n");
    assert_eq!(std::fs::read_to_string(&hosts)?, "192.0.2.1 host\n");
    // Inside, the links were replaced by the VE's own files.
    assert_eq!(
        rt.exec(925, &["/bin/cat", "/etc/resolv.conf"])?,
        "nameserver 10.60.0.53\n"
    );
    assert!(rt
        .exec(925, &["/bin/cat", "/etc/hosts"])?
        .contains("127.0.1.1\tve925\t# vznet"));
    // The same at `ve set`, with the running VE making the link.
    rt.exec(
        925,
        &[
            "/bin/ln",
            "-sf",
            &secret.display().to_string(),
            "/etc/resolv.conf",
        ],
    )?;
    rt.ok(&["ve", "set", "925", "--nameserver", "10.60.0.54"])?;
    assert_eq!(std::fs::read_to_string(&secret)?, "nameserver 192.0.2.99\n");
    assert_eq!(
        rt.exec(925, &["/bin/cat", "/etc/resolv.conf"])?,
        "nameserver 10.60.0.54\n"
    );
    Ok(())
}
