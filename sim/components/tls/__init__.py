"""Client connections and TLS at the gateway listener.

- :mod:`.tickets`: which session ticket (or cached session) a gateway
  instance resumes (key scope, generation, rotation, lifetime), pure logic;
- :mod:`.connections`: clients holding connections through the L4 balancer,
  reconnects, handshakes and their round trips, rolling restarts.

The gateway's CPU account (handshakes on its workers) is
:mod:`sim.components.gateway_cpu`.
"""

from .connections import CLOSE_CAUSES, ConnectionLayer, ConnectionNode
from .tickets import FULL, REASONS, RESUMED, Ticket, TicketKeys, offered_after, scope_domains

__all__ = ["CLOSE_CAUSES", "FULL", "REASONS", "RESUMED", "ConnectionLayer", "ConnectionNode", "Ticket",
           "TicketKeys", "offered_after", "scope_domains"]
