"""The trust policy: the one place that decides whether a node may load a code object.

The decision keys on the runtime's isolation level, where the code came from (installed
by a local application, or fetched from the network) and whether it carries a valid
signature by one of the node's trusted Ed25519 keys. Each (origin, isolation) pair has a
rule: ``any`` (load it), ``signed`` (only with a trusted signature), ``process`` (only when
its runtime runs in process isolation: a rule of the in-process levels that sends such code to
the ``process`` column) or ``never``.

The isolation is the runtime's own level (``sandboxed``, ``guarded``, ``none``) when it runs in
the node's process, and ``process`` when the node runs it in worker processes
(``pan_runtime.isolation``): a column of its own, since the kernel's limits, not the runtime,
contain the code there.

Defaults: sandboxed code may come from anywhere unsigned; guarded and unsandboxed code in the
node's process needs a trusted signature when it arrives from the network and is accepted
unsigned only from a local application; code in a worker process may come from anywhere
unsigned (a crash, a hang, a memory bomb or a forbidden system call costs its worker, never
the node, and it reaches nothing of the node but the PNI). A refusal names the rule that
refused.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pan_runtime.data.codeobj import CodeObject
from pan_runtime.errors import ConfigError, TrustError
from pan_runtime.plugin.runtime import Isolation

__all__ = ["CodeOrigin", "Rule", "TrustPolicy"]

log = logging.getLogger("pan.trust")


class CodeOrigin(str, enum.Enum):
    LOCAL = "local"  # installed by an application on this node (or by the embedding program)
    NETWORK = "network"  # demand-loaded from another node


class Rule(str, enum.Enum):
    ANY = "any"
    SIGNED = "signed"
    PROCESS = "process"  # only in process isolation (a rule of the in-process levels)
    NEVER = "never"


def _default_rules() -> dict[tuple[CodeOrigin, Isolation], Rule]:
    return {
        (CodeOrigin.LOCAL, Isolation.SANDBOXED): Rule.ANY,
        (CodeOrigin.LOCAL, Isolation.GUARDED): Rule.ANY,
        (CodeOrigin.LOCAL, Isolation.NONE): Rule.ANY,
        (CodeOrigin.NETWORK, Isolation.SANDBOXED): Rule.ANY,
        (CodeOrigin.NETWORK, Isolation.GUARDED): Rule.SIGNED,
        (CodeOrigin.NETWORK, Isolation.NONE): Rule.SIGNED,
        (CodeOrigin.LOCAL, Isolation.PROCESS): Rule.ANY,
        (CodeOrigin.NETWORK, Isolation.PROCESS): Rule.ANY,
    }


@dataclass
class TrustPolicy:
    """Rules per (origin, isolation) plus the node's trusted public keys (raw 32 bytes)."""

    trusted_keys: set[bytes] = field(default_factory=set)
    rules: dict[tuple[CodeOrigin, Isolation], Rule] = field(default_factory=_default_rules)
    #: let unsigned unsandboxed (native) code from the network run: any neighbour can then run
    #: arbitrary machine code in this process. Off unless a configuration turns it on by name.
    insecure_allow_unsigned_native: bool = False

    @staticmethod
    def rule_name(origin: CodeOrigin, isolation: Isolation) -> str:
        return f"{origin.value}.{isolation.value}"

    def trust(self, keys: Iterable[bytes]) -> None:
        for k in keys:
            if len(k) != 32:
                raise ConfigError(f"an Ed25519 public key is 32 bytes, got {len(k)}")
            self.trusted_keys.add(bytes(k))

    def set_rule(self, name: str, rule: str) -> None:
        """Set a rule by its name, e.g. ``set_rule("network.none", "any")``."""
        origin_s, _, iso_s = name.partition(".")
        try:
            key = (CodeOrigin(origin_s), Isolation(iso_s))
            value = Rule(rule)
        except ValueError:
            raise ConfigError(
                f"bad trust rule {name!r} = {rule!r}: names are ORIGIN.ISOLATION with ORIGIN in "
                f"local|network and ISOLATION in sandboxed|guarded|none|process; rules are any|signed|process|never"
            ) from None
        if value is Rule.PROCESS and key[1] is Isolation.PROCESS:
            raise ConfigError(f"bad trust rule {name!r} = 'process': the process column takes any|signed|never")
        self.rules[key] = value

    @classmethod
    def from_config(
        cls,
        rules: Mapping[str, str] | None = None,
        keys: Iterable[bytes] = (),
        *,
        insecure_allow_unsigned_native: bool = False,
    ) -> TrustPolicy:
        policy = cls(insecure_allow_unsigned_native=insecure_allow_unsigned_native)
        for name, rule in (rules or {}).items():
            policy.set_rule(name, rule)
        policy.trust(keys)
        return policy

    def check(self, code: CodeObject, isolation: Isolation, origin: CodeOrigin, *, runtime: str | None = None) -> None:
        """Raise ``TrustError`` (naming the rule) if ``code`` may not be loaded."""
        code.check_signatures()
        name = self.rule_name(origin, isolation)
        rule = self.rules[(origin, isolation)]
        if rule is Rule.ANY:
            return
        if rule is Rule.PROCESS:
            rt = runtime or code.runtime
            raise TrustError(
                f"code object {code.short_name} ({code.runtime}, isolation {isolation.value}) from {origin.value} "
                f"origin refused: trust rule {name} = process asks for process isolation; run runtime {rt} in "
                f'worker processes ([runtimes.{rt}] isolation = "process", NodeConfig(isolation={{"{rt}": "process"}}))',
                name,
            )
        if (
            rule is Rule.SIGNED
            and self.insecure_allow_unsigned_native
            and (origin, isolation) == (CodeOrigin.NETWORK, Isolation.NONE)
        ):
            log.warning(
                "loading unsigned native code object %s from the network: insecure_allow_unsigned_native is on",
                code.short_name,
            )
            return
        if rule is Rule.NEVER:
            raise TrustError(
                f"code object {code.short_name} ({code.runtime}, isolation {isolation.value}) refused: "
                f"trust rule {name} = never",
                name,
            )
        signers = set(code.verified_signers())
        if signers & self.trusted_keys:
            return
        what = "is unsigned" if not code.signatures else "has no signature by a trusted key"
        raise TrustError(
            f"code object {code.short_name} ({code.runtime}, isolation {isolation.value}) from "
            f"{origin.value} origin {what}: trust rule {name} = signed. Sign it with `pan sign` using a key "
            f"the node trusts, or install it from a local application.",
            name,
        )
