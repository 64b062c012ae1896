"""Node configuration files: what parses, and errors that name file, line and key."""

from __future__ import annotations

import pytest

from pan_runtime.data.address import NodeAddress
from pan_runtime.errors import ConfigError
from pan_runtime.net.config import _SCHEMA, load_config, parse_config
from pan_runtime.node.trust import CodeOrigin, Rule
from pan_runtime.plugin.loadlimits import LoadLimits
from pan_runtime.plugin.runtime import Isolation

GOOD = """
[node]
name = "middle"
listen = ["127.0.0.1:7002", "[::1]:7002"]
app_socket = "m.sock"
log_level = "info"

[[neighbors]]
address = "127.0.0.1:7001"

[[neighbors]]
address = "::1:2"
endpoint = "[::1]:7003"
mtu = 1500

[[routes]]
dest = "127.0.0.1:7009"
via = "127.0.0.1:7001"
metric = 3

[trust]
trusted_keys = ["%s"]
rules = { "network.guarded" = "any" }

[limits]
queue = 100
pool_buffers = 64
pool_buffer_size = 4096

[demand]
park_per_code = 4
park_total = 16
request_rate = 50.5

[runtimes]
enabled = ["wasm"]
[runtimes.options.wasm]
fuel = 1000
""" % ("ab" * 32)


def test_a_full_configuration_parses(tmp_path):
    cfg = parse_config(GOOD, "n.toml", base=tmp_path)
    assert cfg.address == NodeAddress.parse("127.0.0.1:7002")
    assert cfg.listen == [("127.0.0.1", 7002), ("::1", 7002)]
    assert cfg.app_socket == str(tmp_path / "m.sock")
    assert [n.endpoint for n in cfg.neighbors] == [("127.0.0.1", 7001), ("::1", 7003)]
    assert cfg.neighbors[0].mtu == 4096 and cfg.neighbors[1].mtu == 1500
    assert cfg.routes == [(NodeAddress.parse("127.0.0.1:7009"), NodeAddress.parse("127.0.0.1:7001"), 3)]
    assert bytes.fromhex("ab" * 32) in cfg.trust.trusted_keys
    assert cfg.trust.rules[(CodeOrigin.NETWORK, Isolation.GUARDED)] is Rule.ANY
    assert cfg.node.queue_limit == 100 and cfg.node.pool_buffer_size == 4096
    assert cfg.node.runtimes == ["wasm"] and cfg.node.runtime_options == {"wasm": {"fuel": 1000}}
    assert cfg.demand.park_total == 16 and cfg.demand.request_rate == 50.5


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ('[node]\nlisten = ["127.0.0.1:1"]\nbogus = 1\n', 3, "node.bogus", "unknown key"),
        ('[node]\nname = "x"\n', 1, "node.listen", "missing"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[neighbors]]\naddress = "127.0.0.1:2"\n[[neighbors]]\naddress = "nonsense"\n', 6, "neighbors[1].address", "cannot parse"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[limits]\nqueue = "many"\n', 4, "limits.queue", "integer"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[routes]]\ndest = "127.0.0.1:5"\nvia = "127.0.0.1:6"\n', 5, "routes[0].via", "not a configured neighbour"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[trust]\nrules = { "network.none" = "sometimes" }\n', 4, "trust.rules", "bad trust rule"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[trust]\ntrusted_keys = ["zz"]\n', 4, "trust.trusted_keys[0]", ""),
        ('[node]\nlisten = ["127.0.0.1:1", "127.0.0.2:2"]\n', 2, "node.listen", "one socket per address family"),
        ('[node]\nlisten = ["127.0.0.1:99999"]\n', 2, "node.listen[0]", "port"),
        ('[node]\nlisten = ["127.0.0.1:1"]\n[[neighbors]]\naddress = "::5"\n', 3, "neighbors[0].endpoint", "UDP endpoint"),
    ],
)


def test_errors_name_file_line_and_key(tmp_path, text, line, key, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    where = f"{p}:{line}: "
    assert msg.startswith(where + key), msg
    assert words in msg


def test_toml_syntax_errors_name_the_line(tmp_path):
    p = tmp_path / "syntax.toml"
    p.write_text('[node]\nlisten = ["127.0.0.1:1"]\nname = \n')
    with pytest.raises(ConfigError, match=r"syntax\.toml:3: not valid TOML"):
        load_config(p)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_copy_on_send_reaches_the_node_config():
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\ncopy_on_send = true\n', "n.toml")
    assert cfg.node.copy_on_send is True
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml")
    assert cfg.node.copy_on_send is False
    with pytest.raises(ConfigError, match="limits.copy_on_send"):
        parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\ncopy_on_send = 3\n', "n.toml")


def test_udp_gso_is_on_unless_turned_off_and_must_be_a_boolean():
    assert parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml").udp_gso is True
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nudp_gso = false\n', "n.toml")
    assert cfg.udp_gso is False
    with pytest.raises(ConfigError, match="limits.udp_gso"):
        parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nudp_gso = 1\n', "n.toml")


def test_load_limits_reach_the_node_config_and_bad_ones_name_their_key(tmp_path):
    head = '[node]\nlisten = ["127.0.0.1:7100"]\n'
    cfg = parse_config(
        head + "[limits]\ncode_bytes = 65536\ncode_functions = 50\ncode_nesting = 8\ncode_locals = 9\n"
        "code_imports = 10\ncode_entries = 11\ncompile_time_ms = 1500\ncompile_memory = 268435456\ncompile_jobs = 2\n"
        "[demand]\ninflight_bytes = 1048576\n",
        "n.toml",
    )
    assert cfg.node.load_limits == LoadLimits(
        code_bytes=65536, code_functions=50, code_nesting=8, code_locals=9, code_imports=10, code_entries=11,
        compile_time_ms=1500, compile_memory=256 << 20, compile_jobs=2,
    )
    assert cfg.demand.inflight_bytes == 1 << 20
    assert parse_config(head, "n.toml").node.load_limits == LoadLimits()
    for text, line, key, words in [
        (head + "[limits]\ncode_functions = 0\n", 4, "limits.code_functions", "outside 1.."),
        (head + "[limits]\ncompile_memory = 1048576\n", 4, "limits.compile_memory", "outside 67108864.."),
        (head + "[limits]\ncode_nesting = true\n", 4, "limits.code_nesting", "integer"),
        (head + "[limits]\ncode_bytes = 1048576\n[demand]\ninflight_bytes = 1048576\n", 6, "demand.inflight_bytes", "at least 1050114"),
    ]:
        p = tmp_path / "bad.toml"
        p.write_text(text)
        with pytest.raises(ConfigError) as ei:
            load_config(p)
        assert str(ei.value).startswith(f"{p}:{line}: {key}"), str(ei.value)
        assert words in str(ei.value)


@pytest.mark.parametrize(
    ("limits", "key", "words"),
    [
        ("pool_buffers = 64\npool_reserve = 64\n", "limits.pool_reserve", "outside 0..63"),
        ("pool_buffers = 64\npool_reserve = 16\ncode_buffers = 49\n", "limits.code_buffers", "outside 0..48"),
        ("state_bytes = 2048\nstate_total_bytes = 1024\n", "limits.state_bytes", "state_total_bytes"),
    ],
)


def test_what_code_may_hold_must_fit_the_pool_and_the_store(limits, key, words):
    with pytest.raises(ConfigError, match=key) as ei:
        parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\n' + limits, "n.toml")
    assert words in str(ei.value)


def test_buffer_quota_and_soft_state_bounds_reach_the_node_config():
    text = '[node]\nlisten = ["127.0.0.1:7100"]\n[demand]\npark_total = 8\n[limits]\npool_buffers = 64\n'
    cfg = parse_config(text, "n.toml").node
    assert (cfg.pool_reserve, cfg.code_buffers, cfg.state_total_bytes) == (16, 4, 64 << 20)
    cfg = parse_config(text + "pool_reserve = 8\ncode_buffers = 10\nstate_total_bytes = 8388608\n", "n.toml").node
    assert (cfg.pool_reserve, cfg.code_buffers, cfg.state_total_bytes) == (8, 10, 8 << 20)


HEAD = '[node]\nlisten = ["127.0.0.1:1"]\n'
INT_LIMITS = sorted(k for k in _SCHEMA["limits"] if k not in ("copy_on_send", "fast_path", "udp_gso"))


@pytest.mark.parametrize("key", INT_LIMITS)


def test_every_limit_has_an_upper_bound(tmp_path, key):
    p = tmp_path / "huge.toml"
    p.write_text(f"{HEAD}[limits]\n{key} = {2**63 - 1}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:4: limits.{key}: "), ei.value


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (HEAD + "[cache]\nmax_bytes = 9223372036854775807\n", 4, "cache.max_bytes", "outside"),
        (HEAD + "[demand]\nrequest_rate = inf\n", 4, "demand.request_rate", "at most"),
        (HEAD + "[demand]\nserve_rate = nan\n", 4, "demand.serve_rate", "at most"),
        (HEAD + "[demand]\nserve_rate = 1e300\n", 4, "demand.serve_rate", "at most"),
        (HEAD + "[demand]\nrequest_rate = -1\n", 4, "demand.request_rate", "above 0"),
        (HEAD + "[demand]\nchunk_size = 70000\n", 4, "demand.chunk_size", "outside"),
        (HEAD + "[demand]\ndeadline_ms = 9223372036854775807\n", 4, "demand.deadline_ms", "outside"),
        (HEAD + "[limits]\npool_buffers = 262144\npool_buffer_size = 65535\n", 4, "limits.pool_buffers", "receive pool"),
        (HEAD + "[limits]\napp_max_frame = 1048576\napp_in_bytes = 4096\n", 5, "limits.app_in_bytes", "below limits.app_max_frame"),
        ('[node]\nlisten = ["127.0.0.1:1"]\nname = "a\\nb"\n', 3, "node.name", "printable"),
        ('[node]\nlisten = ["127.0.0.1:1"]\napp_socket = "a\\u0000b"\n', 3, "node.app_socket", "no NUL"),
        ('[node]\nlisten = ["127.0.0.1:1"]\napp_socket = "' + "s" * 120 + '.sock"\n', 3, "node.app_socket", "limited to 107"),
        (HEAD + "[cache]\ndir = \"\\u0000\"\n", 4, "cache.dir", "no NUL"),
        (HEAD + "[trust]\ntrusted_keys = [\"k\\u0000\"]\n", 4, "trust.trusted_keys[0]", "no NUL"),
        (HEAD + "[trust.rules]\nnetwork.none = 3\n", 4, "trust.rules.network.none", "string"),
        (HEAD + "[errors]\nrate = 0\n", 4, "errors.rate", "above 0"),
        (HEAD + "[errors]\nper_dest_rate = inf\n", 4, "errors.per_dest_rate", "at most"),
        (HEAD + "[errors]\nburst = 0\n", 4, "errors.burst", "outside"),
        (HEAD + "[errors]\ndestinations = 9223372036854775807\n", 4, "errors.destinations", "outside"),
        (HEAD + "[errors]\nenabled = 1\n", 4, "errors.enabled", "true or false"),
    ],
)


def test_values_out_of_range_name_file_line_and_key(tmp_path, text, line, key, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: {key}: "), msg
    assert words in msg, msg


def test_upper_bounds_themselves_are_accepted_and_rule_tables_may_nest(tmp_path):
    text = HEAD + (
        "[limits]\nbudget_time_ms = 60000\nbudget_steps = 1099511627776\nbudget_fuel = 281474976710656\n"
        "state_ttl_ms = 604800000\n[demand]\nrequest_rate = 1000000\nchunk_size = 65507\n"
        '[trust.rules]\nnetwork.none = "never"\n'
    )
    cfg = parse_config(text, "ok.toml", base=tmp_path)
    assert cfg.node.budget.fuel == 1 << 48 and cfg.demand.chunk_size == 65507
    assert cfg.trust.rules[(CodeOrigin.NETWORK, Isolation.NONE)] is Rule.NEVER


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'[node]\nlisten = ["127.0.0.1:1"]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=rf"^{p}:3: not UTF-8 text \(byte 0xe9\)"):
        load_config(p)


KEY_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # reading /dev/zero must not eat the machine
from pan_runtime.errors import ConfigError
from pan_runtime.net.config import load_config
try:
    load_config(sys.argv[1])
except ConfigError as exc:
    print(exc)
"""


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "big"])


def test_trusted_key_files_are_small_regular_files(tmp_path, target):
    import os
    import subprocess
    import sys

    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # nobody writes: reading it would block start-up forever
    elif target == "big":
        (tmp_path / "big").write_bytes(b"ab" * 4096)
    p = tmp_path / "n.toml"
    p.write_text(HEAD + f'[trust]\ntrusted_keys = ["{target}"]\n')
    # a hang guard only: the answer comes at once
    r = subprocess.run([sys.executable, "-c", KEY_CHILD, str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith(f"{p}:4: trust.trusted_keys[0]: "), r.stdout
    assert ("more than 4096" if target == "big" else "not a regular file") in r.stdout


def test_error_report_limits_parse(tmp_path):
    p = tmp_path / "errors.toml"
    p.write_text(HEAD + "[errors]\nenabled = false\nrate = 2.5\nburst = 4\nper_dest_rate = 1\nper_dest_burst = 2\ndestinations = 8\n")
    ec = load_config(p).errors
    assert (ec.enabled, ec.rate, ec.burst, ec.per_dest_rate, ec.per_dest_burst, ec.destinations) == (False, 2.5, 4, 1.0, 2, 8)
    p.write_text(HEAD + "[errors]\nburst_size = 4\n")
    with pytest.raises(ConfigError, match="errors.burst_size"):
        load_config(p)


def test_fair_share_and_neighbour_budget_limits_reach_the_node_config():
    cfg = parse_config(
        '[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nfair_quantum_us = 50\nneighbour_sockets = 8\n'
        "neighbour_buffer = 65536\nneighbour_exhaustions = 3\nneighbour_window_ms = 2000\n"
        "neighbour_backoff_ms = 500\nneighbour_max_backoff_ms = 8000\n",
        "n.toml",
    )
    n = cfg.node
    assert (n.fair_quantum_us, n.neighbour_sockets, n.neighbour_buffer) == (50, 8, 65536)
    assert (n.neighbour_exhaustions, n.neighbour_window_ms, n.neighbour_backoff_ms, n.neighbour_max_backoff_ms) == (3, 2000, 500, 8000)
    defaults = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml").node
    assert (defaults.fair_quantum_us, defaults.neighbour_sockets, defaults.neighbour_exhaustions) == (100, 256, 5)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("fair_quantum_us = 0", "limits.fair_quantum_us"),
        ("neighbour_sockets = -1", "limits.neighbour_sockets"),
        ("neighbour_buffer = 1024", "limits.neighbour_buffer"),
        ("neighbour_exhaustions = 0", "limits.neighbour_exhaustions"),
        ('neighbour_window_ms = "long"', "limits.neighbour_window_ms"),
        ("neighbour_backoff_ms = 5000\nneighbour_max_backoff_ms = 100", "limits.neighbour_max_backoff_ms"),
        ("worker_cpus = 1", "limits.worker_cpus"),
        ("worker_cpus = [-1]", "limits.worker_cpus[0]"),
        ('worker_cpus = [0, "two"]', "limits.worker_cpus[1]"),
        ("worker_cpus = [1024]", "limits.worker_cpus[0]"),
        ("worker_poll_us = -5", "limits.worker_poll_us"),
        ("thread_cpus = 0", "limits.thread_cpus"),
        ("thread_cpus = [0, -1]", "limits.thread_cpus[1]"),
        ("thread_cpus = [1024]", "limits.thread_cpus[0]"),
        ("worker_poll_us = 100001", "limits.worker_poll_us"),
    ],
)


def test_fair_share_neighbour_budget_and_worker_cpu_limits_are_checked(tmp_path, line, key):
    p = tmp_path / "bad.toml"
    p.write_text(f'[node]\nlisten = ["127.0.0.1:1"]\n[limits]\n{line}\n')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:") and key in str(ei.value), str(ei.value)


def test_trust_rules_leave_the_node_name_alone():
    cfg = parse_config('[node]\nname = "n1"\nlisten = ["127.0.0.1:7001"]\n[trust]\nrules = { "network.none" = "any" }\n')
    assert cfg.name == "n1"


def test_a_runtime_can_run_in_worker_processes():
    cfg = parse_config(
        '[node]\nlisten = ["127.0.0.1:7100"]\n[runtimes]\nenabled = ["native", "wasm"]\n'
        '[runtimes.native]\nisolation = "process"\n[runtimes.wasm]\nisolation = "in_process"\n'
        "[limits]\nworkers = 4\nworker_memory = 67108864\nworker_grace_ms = 20\nworker_start_ms = 5000\nworker_backoff_ms = 0\n"
        "worker_standbys = 2\nworker_init_ms = 250\n",
        "n.toml",
    )
    n = cfg.node
    assert n.mechanism("native") == "process" and n.mechanism("wasm") == "in_process"
    assert (n.workers, n.worker_memory, n.worker_grace_ms, n.worker_start_ms, n.worker_backoff_ms) == (4, 64 << 20, 20, 5000, 0)
    assert n.worker_standbys == 2 and n.worker_init_ms == 250
    assert cfg.node.runtimes == ["native", "wasm"]


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (HEAD + '[runtimes.native]\nisolation = "separate"\n', 4, "runtimes.native.isolation", "in_process, process"),
        (HEAD + '[runtimes.native]\nisolation = 1\n', 4, "runtimes.native.isolation", "string"),
        (HEAD + '[runtimes.native]\nsandbox = "process"\n', 4, "runtimes.native.sandbox", "unknown key"),
        (HEAD + '[runtimes]\nnative = "process"\n', 4, "runtimes.native", "a table [runtimes.RUNTIME]"),
        (HEAD + "[limits]\nworkers = 0\n", 4, "limits.workers", "0 is outside 1..4096"),
        (HEAD + "[limits]\nworker_memory = 1024\n", 4, "limits.worker_memory", "1024 is outside 16777216.."),
        (HEAD + "[limits]\nworker_standbys = -1\n", 4, "limits.worker_standbys", "-1 is outside 0..4096"),
        (HEAD + '[trust]\nrules = { "network.process" = "process" }\n', 4, "trust.rules", "the process column takes"),
    ],
)
def test_isolation_settings_are_checked(tmp_path, text, line, key, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: {key}"), msg
    assert words in msg


def test_worker_cpus_and_polling_reach_the_node_config_and_apply_only_on_cpus_apart():
    import os

    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nworker_cpus = [1, 3]\nworker_poll_us = 250\n', "n.toml")
    n = cfg.node
    assert n.worker_cpus == {1, 3} and n.worker_poll_us == 250
    mine = os.sched_getaffinity(0)
    # polling applies only where the node may run on none of the workers' CPUs
    assert n.worker_poll_ns() == (0 if n.worker_cpus & mine else 250_000)
    apart = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nworker_cpus = [1023]\nworker_poll_us = 250\n').node
    assert apart.worker_poll_ns() == (0 if 1023 in mine else 250_000)
    shared = parse_config(f'[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nworker_cpus = [{min(mine)}]\nworker_poll_us = 250\n').node
    assert shared.worker_poll_ns() == 0
    defaults = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n', "n.toml").node
    assert defaults.worker_cpus == frozenset() and defaults.worker_poll_us == 0 and defaults.worker_poll_ns() == 0



def test_thread_cpus_reach_the_node_config_in_order_and_keep_polling_workers_apart():
    cfg = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nthreads = 3\nthread_cpus = [1, 0, 1]\n', "n.toml")
    assert cfg.node.thread_cpus == (1, 0, 1)
    assert parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n').node.thread_cpus == ()
    # workers poll only on CPUs none of the node's threads is pinned to
    apart = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nthread_cpus = [1022]\n'
                         'worker_cpus = [1023]\nworker_poll_us = 250\n').node
    assert apart.worker_poll_ns() == 250_000
    shared = parse_config('[node]\nlisten = ["127.0.0.1:7100"]\n[limits]\nthread_cpus = [1022, 1023]\n'
                          'worker_cpus = [1023]\nworker_poll_us = 250\n').node
    assert shared.worker_poll_ns() == 0
