"""TLS session resumption: which ticket (or cached session) a gateway instance can resume.

A ticket is sealed by the instance that issued it with its current key. It
resumes on an instance only when all hold:

- it has not expired: less than ``session_timeout_s`` since it was issued
  (a client does not offer an expired one);
- the instance holds the key that sealed it: the same key *domain* (the
  issuing instance itself when each instance makes its own keys, Envoy's
  default; or the AZ, the region or the fleet sharing one
  ``session_ticket_keys`` set), in the same key *generation* (keys an
  instance made itself are new after it restarts; shared keys survive
  restarts), and the sealing key is still among the ``ticket_keys_kept``
  newest (keys rotate every ``ticket_key_rotation_s``, in epochs
  ``floor(t / rotation)``, the same instants for every holder);
- tickets cross gateway pools only between listeners with the same TLS
  settings (Envoy's session-ID context hashes the certificate and the TLS
  configuration, so differently configured listeners refuse each other's
  tickets even with the same keys).

A stateful session cache is the same rule with the domain always the
instance, and no key rotation. TLS 1.3 issues a new ticket on every
connection, full or resumed; TLS 1.2 only on a full handshake (a resumed
TLS 1.2 session keeps its ticket and its original lifetime).

Pure logic, no randomness: the connection layer asks :meth:`TicketKeys.handshake`.
"""

from __future__ import annotations

import math

from sim.config.models import TlsListener

FULL = "full"
RESUMED = "resumed"

#: Why a connection took a full handshake (besides resuming).
REASONS = ("no_ticket", "expired", "other_keys", "keys_renewed", "key_rotated", "disabled")


class Ticket:
    """A session ticket a client holds.

    Attributes:
        domain: who holds the sealing key (instance name, or the pool's AZ, region or fleet tag).
        generation: that domain's key generation when it was sealed.
        epoch: the rotation epoch of the sealing key.
        issued_s: when it was issued (its lifetime runs from here).
    """

    __slots__ = ("domain", "generation", "epoch", "issued_s")

    def __init__(self, domain: str, generation: int, epoch: int, issued_s: float):
        self.domain = domain
        self.generation = generation
        self.epoch = epoch
        self.issued_s = issued_s

    def __repr__(self) -> str:
        return f"Ticket({self.domain!r}, gen={self.generation}, epoch={self.epoch}, issued_s={self.issued_s!r})"


class TicketKeys:
    """One gateway pool's ticket keys (or session caches) and the resumption rule.

    Args:
        pool: the pool's name.
        tls: the pool's validated TLS listener.
        domains: each instance name -> the tag of its key scope (its own
            name, its AZ, its region or ``fleet``), from the pool's
            ``session_ticket_keys_scope``.
        generations: key domain -> generation, shared by every pool of the
            fleet (a new dict when None), so pools with the same TLS
            settings share keys across a scope.
    """

    def __init__(self, pool: str, tls: TlsListener, domains: dict[str, str], generations: dict | None = None):
        self.pool = pool
        self.tls = tls
        self.tls13 = tls.tls_version == "TLSv1_3"
        self.mode = tls.session_resumption
        self.lifetime_s = tls.session_timeout_s
        # A session cache never rotates keys; shared ticket keys rotate only when configured to.
        self.rotation_s = tls.ticket_key_rotation_s if self.mode == "tickets" else None
        self.kept = tls.ticket_keys_kept
        # Listeners whose settings differ never open each other's tickets (the session-ID context).
        ident = (f"{tls.tls_version}/{tls.certificate}/{tls.session_resumption}/{tls.session_timeout_s!r}/"
                 f"{tls.ticket_key_rotation_s!r}/{tls.ticket_keys_kept}")
        self.domain_of = {name: f"{ident}/{d}" for name, d in domains.items()}
        self.generation = {} if generations is None else generations
        for d in self.domain_of.values():
            self.generation.setdefault(d, 0)
        # Keys an instance makes itself (or its cache) die with its process; shared keys do not.
        self.renew_on_restart = self.mode == "session_cache" or tls.session_ticket_keys_scope == "instance"

    def epoch(self, t: float) -> int:
        """The key-rotation epoch at ``t`` (0 when keys never rotate)."""
        r = self.rotation_s
        return 0 if r is None else math.floor(t / r)

    def issue(self, gateway: str, t: float) -> Ticket:
        """A ticket ``gateway`` seals now."""
        d = self.domain_of[gateway]
        return Ticket(d, self.generation[d], self.epoch(t), t)

    def refusal(self, ticket: Ticket | None, gateway: str, t: float) -> str | None:
        """Why ``gateway`` cannot resume ``ticket`` at ``t`` (a :data:`REASONS` entry), or None if it can."""
        if self.mode == "none":
            return "disabled"
        if ticket is None:
            return "no_ticket"
        if t - ticket.issued_s >= self.lifetime_s:
            return "expired"
        d = self.domain_of[gateway]
        if ticket.domain != d:
            return "other_keys"
        if ticket.generation != self.generation[d]:
            return "keys_renewed"
        if self.epoch(t) - ticket.epoch >= self.kept:
            return "key_rotated"
        return None

    def handshake(self, ticket: Ticket | None, gateway: str, t: float) -> tuple[str, str | None, Ticket | None]:
        """A new connection to ``gateway`` at ``t`` from a client offering ``ticket``.

        Returns:
            ``(kind, reason, new_ticket)``: ``FULL`` or ``RESUMED``; why it
            was full (None when resumed); the ticket the gateway issues on
            this connection (None when it issues none: TLS 1.2 resumed, or
            resumption disabled).
        """
        reason = self.refusal(ticket, gateway, t)
        kind = RESUMED if reason is None else FULL
        new = None
        if self.mode != "none" and (self.tls13 or kind == FULL):
            new = self.issue(gateway, t)
        return kind, reason, new

    def restart(self, gateway: str) -> None:
        """``gateway``'s process restarted: keys it made itself (and its cache) are new."""
        if self.renew_on_restart:
            self.generation[self.domain_of[gateway]] += 1


def scope_domains(scope: str, instances: list[tuple[str, str, str]]) -> dict[str, str]:
    """Each instance's key-scope tag from ``(name, az, region)``: its name, AZ, region, or ``fleet``."""
    pick = {"instance": 0, "az": 1, "region": 2}
    if scope == "fleet":
        return {name: "fleet" for name, _, _ in instances}
    return {inst[0]: inst[pick[scope]] for inst in instances}


def offered_after(policy: str, held: Ticket | None, new: Ticket | None, now: float, lifetime_s: float) -> Ticket | None:
    """The ticket a client holds after a handshake that issued ``new`` (None: none issued).

    ``latest``: the newest it was issued (browsers). ``first``: the one it
    holds until that one expires (the client knows its lifetime), resumed or
    not; then the next one it is issued.
    """
    if new is None:
        return held
    if policy == "latest" or held is None or now - held.issued_s >= lifetime_s:
        return new
    return held


__all__ = ["FULL", "REASONS", "RESUMED", "Ticket", "TicketKeys", "offered_after", "scope_domains"]
