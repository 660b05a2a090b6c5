//! keepalived 2.2.7's keywords that vznet does not carry, per block, with why. A
//! keyword in none of these lists and not translated is not keepalived's: keepalived
//! ignores it (with a complaint), and so does the import.

/// Where a keyword is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Top level and `global_defs` (keepalived accepts many globals at both).
    Global,
    /// `vrrp_instance`.
    Instance,
    /// `vrrp_sync_group`.
    SyncGroup,
    /// `virtual_server`.
    VirtualServer,
    /// `real_server`.
    RealServer,
    /// Inside a checker block (`TCP_CHECK`, `HTTP_GET`, ...).
    Checker,
    /// Another block (`vrrp_script`, `track_file`, `url`, ...): its name.
    Block(&'static str),
}

impl Scope {
    /// The block's name in report lines.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global_defs",
            Scope::Instance => "vrrp_instance",
            Scope::SyncGroup => "vrrp_sync_group",
            Scope::VirtualServer => "virtual_server",
            Scope::RealServer => "real_server",
            Scope::Checker => "a checker",
            Scope::Block(name) => name,
        }
    }
}

const EMAIL: &str = "vznet sends no e-mail alerts (notify hooks can)";
const SNMP: &str =
    "vznet has no SNMP or D-Bus interface (vznet status --json and --metrics report the state)";
const FIFO: &str = "vznet has no notify FIFO (notify hooks get the state in their environment)";
const IPVS: &str = "vznet balances with nftables, not IPVS: there is no IPVS state to tune or sync";
const SCHED: &str =
    "vznetd chooses its own scheduling (protocol thread at nice -10, health probes in SCHED_RR)";
const NETLINK_BUFS: &str = "vznetd sizes its netlink buffers itself";
const PROCESS: &str =
    "vznetd is one process; it has no separate VRRP, checker or BFD processes to name";
const GARP_LOWER: &str = "vznet sends no gratuitous ARP after a lower-priority advert";
const BFD: &str = "vznet has no BFD";
const FIREWALL: &str = "vznet's accept mode uses its own nftables table inet vznet_vrrp";

/// Why `keyword` in `scope` is not carried, if it is keepalived's.
pub fn reason(scope: Scope, keyword: &str) -> Option<&'static str> {
    match scope {
        Scope::Global => global(keyword),
        Scope::Instance => instance(keyword),
        Scope::SyncGroup => sync_group(keyword),
        Scope::VirtualServer => virtual_server(keyword),
        Scope::RealServer => real_server(keyword),
        Scope::Checker => checker(keyword),
        Scope::Block(_) => None,
    }
}

fn global(k: &str) -> Option<&'static str> {
    Some(match k {
        "notification_email" | "notification_email_from" | "smtp_server" | "smtp_helo_name"
        | "smtp_connect_timeout" | "smtp_alert" | "smtp_alert_vrrp" | "smtp_alert_checker"
        | "no_email_faults" | "no_checker_emails" => EMAIL,
        "snmp_socket" | "enable_traps" | "enable_snmp_vrrp" | "enable_snmp_keepalived"
        | "enable_snmp_rfc" | "enable_snmp_rfcv2" | "enable_snmp_rfcv3"
        | "enable_snmp_checker" | "enable_dbus" | "dbus_service_name" => SNMP,
        "notify_fifo" | "notify_fifo_script" | "vrrp_notify_fifo" | "vrrp_notify_fifo_script"
        | "lvs_notify_fifo" | "lvs_notify_fifo_script" | "fifo_write_vrrp_states_on_reload" => FIFO,
        "lvs_timeouts" | "lvs_flush" | "lvs_flush_on_stop" | "lvs_flush_onstop"
        | "lvs_sync_daemon" | "net_namespace_ipvs" | "nftables_ipvs"
        | "nftables_ipvs_priority" | "nftables_ipvs_start_fwmark" | "lvs_netlink_cmd_rcv_bufs"
        | "lvs_netlink_cmd_rcv_bufs_force" | "lvs_netlink_monitor_rcv_bufs"
        | "lvs_netlink_monitor_rcv_bufs_force" | "lvs_process_name" => IPVS,
        "vrrp_priority" | "vrrp_no_swap" | "vrrp_rt_priority" | "vrrp_cpu_affinity"
        | "vrrp_rlimit_rttime" | "vrrp_rlimit_rtime" | "checker_priority" | "checker_no_swap"
        | "checker_rt_priority" | "checker_cpu_affinity" | "checker_rlimit_rttime"
        | "checker_rlimit_rtime" | "bfd_priority" | "bfd_no_swap" | "bfd_rt_priority"
        | "bfd_cpu_affinity" | "bfd_rlimit_rttime" | "bfd_rlimit_rtime" => SCHED,
        "vrrp_netlink_cmd_rcv_bufs" | "vrrp_netlink_cmd_rcv_bufs_force"
        | "vrrp_netlink_monitor_rcv_bufs" | "vrrp_netlink_monitor_rcv_bufs_force"
        | "process_monitor_rcv_bufs" | "process_monitor_rcv_bufs_force" | "vrrp_rx_bufs_policy"
        | "vrrp_rx_bufs_multiplier" => NETLINK_BUFS,
        "process_names" | "process_name" | "vrrp_process_name" | "checker_process_name"
        | "bfd_process_name" | "use_pid_dir" | "child_wait_time" | "data_use_instance" => PROCESS,
        "vrrp_garp_lower_prio_delay" | "vrrp_garp_lower_prio_repeat" => GARP_LOWER,
        "vrrp_iptables" | "vrrp_ipsets" | "nftables" | "nftables_priority" | "nftables_ifindex"
        | "nftables_counters" | "namespace_with_ipsets" => FIREWALL,
        "net_namespace" => "run vznetd in that network namespace (ip netns exec NAME vznetd ...)",
        "instance" => "no instance name: the config folder and state folder tell vznetd instances apart",
        "linkbeat_use_polling" | "linkbeat_interfaces" => "vznet follows links by netlink only",
        "startup_script" | "startup_script_timeout" | "shutdown_script" | "shutdown_script_timeout" => {
            "run it from the service manager (ExecStartPre/ExecStopPost of vznetd.service)"
        }
        "max_auto_priority" | "min_auto_priority_delay" => SCHED,
        "dynamic_interfaces" => "vznet needs no switch for interfaces that come and go: it follows them",
        "default_interface" => "vznet has no default interface: static addresses name theirs",
        "disable_local_igmp" => "vznet leaves the host's IGMP settings alone",
        "vrrp_mcast_group4" | "vrrp_mcast_group6" => "vznet sends adverts to RFC 5798's groups only (224.0.0.18, ff02::12)",
        "vrrp_skip_check_adv_addr" => "vznet always checks the addresses of every advert",
        "vrrp_lower_prio_no_advert" | "vrrp_higher_prio_send_advert" => {
            "vznet answers a lower-priority advert as RFC 9568 says (strict = true: not at all)"
        }
        "vrrp_down_timer_adverts" => "vznet's Master_Down_Interval is RFC 5798's (3 adverts plus skew)",
        "vrrp_garp_interval" | "vrrp_gna_interval" | "vrrp_min_garp" => {
            "vznet does not pace gratuitous ARPs / NAs per interface"
        }
        "vrrp_garp_extra_if" | "vrrp_vmac_garp_intvl" => "vznet sends no gratuitous ARPs on the parent of a virtual MAC interface",
        "vrrp_notify_priority_changes" => "vznet's hooks run on state changes, not priority changes",
        "vrrp_startup_delay" => "vznetd starts its instances at once",
        "log_unknown_vrids" => "vznet counts adverts of unknown VRIDs in its drop counters",
        "vmac_prefix" | "vmac_addr_prefix" => "vznet names virtual MAC interfaces vrVRID.IFINDEX",
        "enable_script_security" => "vznet does not check the ownership of script paths",
        "rs_init_notifies" => "vznet runs notify_up/notify_down on changes only",
        "checker_log_all_failures" => "vznet logs a backend's changes, not every failed probe",
        "umask" | "random_seed" | "reload_check_config" | "reload_time_file" | "reload_repeat"
        | "reload_file" | "include_check" | "config_save_dir" | "tmp_config_directory" => {
            "keepalived's process settings have no vznetd counterpart"
        }
        "static_ipaddress" => "vznet puts addresses on the links it manages only ([[bridge]] addresses); add them there or outside vznet",
        "track_group" => "vznet's static routes do not follow tracked interfaces",
        "garp_group" => "vznet does not pace gratuitous ARPs per interface group",
        "interface_up_down_delays" => "vznet reacts to link changes at once (no up/down debouncing)",
        "bfd_instance" => BFD,
        _ => return None,
    })
}

fn instance(k: &str) -> Option<&'static str> {
    Some(match k {
        "smtp_alert" => EMAIL,
        "notify_deleted" => "vznet runs notify_stop when an instance is removed",
        "notify_master_rx_lower_pri" => {
            "vznet has no hook for a lower-priority advert seen as Master"
        }
        "notify_priority_changes" => "vznet's hooks run on state changes, not priority changes",
        "dont_track_primary" => "vznet always follows the instance's own interface",
        "garp_lower_prio_delay" | "garp_lower_prio_repeat" => GARP_LOWER,
        "lower_prio_no_advert" | "higher_prio_send_advert" => {
            "vznet answers a lower-priority advert as RFC 9568 says (strict = true: not at all)"
        }
        "mcast_dst_ip" => "vznet sends adverts to RFC 5798's groups only (224.0.0.18, ff02::12)",
        "use_ipvlan" => "vznet has virtual MACs (use_vmac), not IPVLAN",
        "vmac_xmit_base" => {
            "vznet sends the adverts of a virtual-MAC instance from the virtual MAC interface"
        }
        "use_vmac_addr" => "vznet's virtual MAC interface uses the VRRP MAC",
        "garp_extra_if" | "vmac_garp_intvl" => {
            "vznet sends no gratuitous ARPs on the parent of a virtual MAC interface"
        }
        "down_timer_adverts" => "vznet's Master_Down_Interval is RFC 5798's (3 adverts plus skew)",
        "track_bfd" => BFD,
        "skip_check_adv_addr" => "vznet always checks the addresses of every advert",
        "promote_secondaries" => {
            "vznet leaves promote_secondaries alone (set it with a per-interface sysctl)"
        }
        "unicast_ttl" => "vznet sends and expects TTL 255 (RFC 5798 5.1.1.3)",
        "unicast_fault_no_peer" => "vznet multicasts when there are no unicast peers",
        "old_unicast_checksum" => {
            "vznet's checksum key chooses the VRRPv3 checksum for all of an instance's adverts"
        }
        "native_ipv6" => "vznet takes the family from the virtual IPs",
        "track_src_ip" => "vznet does not follow the advert source address",
        "linkbeat_use_polling" => "vznet follows links by netlink only",
        "vrf" => "vznet has no VRF support for VRRP",
        "lvs_sync_daemon_interface" => IPVS,
        "kernel_rx_buf_size" => NETLINK_BUFS,
        "debug" => "vznet logs with VZNET_LOG=debug",
        _ => return None,
    })
}

fn sync_group(k: &str) -> Option<&'static str> {
    Some(match k {
        "smtp_alert" => EMAIL,
        "track_bfd" => BFD,
        "notify_priority_changes" => "vznet's hooks run on state changes, not priority changes",
        _ => return None,
    })
}

fn virtual_server(k: &str) -> Option<&'static str> {
    Some(match k {
        "smtp_alert" => EMAIL,
        "snmp_name" => SNMP,
        "ops" | "hashed" | "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback"
        | "mh-port" | "mh-fallback" => "IPVS scheduler flags: vznet's schedulers have none",
        "persistence_engine" => "vznet's persistence is by client address only",
        "ha_suspend" => "vznet checks backends whether or not this host holds the VIP (nothing to suspend: the rules match only traffic that reaches it)",
        "sorry_server_lvs_method" => "vznet forwards to the sorry server like the backends",
        "ip_family" => "vznet takes the family from the addresses",
        "warmup" => "vznet's checks start at once, without a random warm-up delay",
        _ => return None,
    })
}

fn real_server(k: &str) -> Option<&'static str> {
    Some(match k {
        "smtp_alert" => EMAIL,
        "snmp_name" => SNMP,
        "lvs_method" => "vznet sets lb_kind per virtual server, not per backend",
        "uthreshold" | "lthreshold" => "vznet has no per-backend connection limits",
        "warmup" => "vznet's checks start at once, without a random warm-up delay",
        "PING_CHECK" => "vznet has no ICMP check: use a command check (ping -c1 -W1 ADDRESS)",
        "UDP_CHECK" => "vznet has no UDP check: use a command check",
        "DNS_CHECK" => "vznet has no DNS check: use a command check (dig +time=1 @ADDRESS NAME)",
        "SMTP_CHECK" => "vznet has no SMTP check: use a tcp check on the port or a command check",
        "FILE_CHECK" => "vznet has no file check: use a command check (test -e FILE)",
        "BFD_CHECK" => BFD,
        _ => return None,
    })
}

fn checker(k: &str) -> Option<&'static str> {
    Some(match k {
        "connect_ip" => "vznet checks the backend's own address",
        "bindto" | "bind_port" | "bind_if" => "vznet's probes take the source address and port the kernel picks",
        "fwmark" => "vznet's probes carry no firewall mark",
        "warmup" => "vznet's checks start at once, without a random warm-up delay",
        "log_all_failures" => "vznet logs a backend's changes, not every failed probe",
        "http_protocol" => "vznet's HTTP checks speak HTTP/1.0",
        "enable_sni" => "vznet sends SNI when the check names a virtualhost (tls_server_name)",
        "fast_recovery" => "vznet's rise counts successes at the normal interval",
        "regex" | "regex_no_match" | "regex_options" | "regex_min_offset" | "regex_max_offset"
        | "regex_stack" => "vznet's HTTP checks match status and digest, not regular expressions: use a command check (curl | grep)",
        "misc_dynamic" => "vznet's command checks are up or down: the exit code does not set the weight",
        "user" => "vznet runs command checks as vznetd's user",
        _ => return None,
    })
}
