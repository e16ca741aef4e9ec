"""A virtual network with NATs, STUN and TURN, for testing ICE in virtual time.

:class:`VirtualNet` joins sans-IO :class:`~syncice.ice.IceAgent`\\ s in one
process: no socket, no thread, no clock. Virtual time is a float that
:meth:`VirtualNet.run` advances from deadline to deadline (the earliest
datagram in flight or agent timer), and every random choice (loss, jitter,
duplication, reordering, agents' tie-breakers and transaction IDs) comes from
one :class:`random.Random` seeded by the caller: the same seed gives the same
run, datagram for datagram.

The topology:

- **Hosts** (:meth:`VirtualNet.add_host`) have an IP address. A host is on the
  public "internet" segment, or behind a :class:`Nat` on a private segment.
- **NATs** (:meth:`VirtualNet.add_nat`) have a public IP address and the
  behaviours of RFC 4787 (:class:`NatBehavior`): mapping and filtering each
  endpoint-independent, address-dependent or address-and-port-dependent, an
  optional mapping timeout, optional hairpinning. A private host is only
  reachable from outside through a mapping of its NAT; hosts behind the same
  NAT reach each other directly.
- **Links** (:class:`Link`): every host and every NAT's public side has an
  access link with a profile for each direction (loss, delay, jitter,
  duplication, reordering), and the core between them has one too
  (:attr:`VirtualNet.core`). A datagram crosses the sender's link up, the
  sender's NAT (if any) and its link up, the core, the receiver's NAT link
  down and the receiver's link down.
- **Servers** on the public segment: :class:`StunServer` (Binding) and
  :class:`TurnServer` (RFC 8656 over UDP and TCP, long-term credentials).
- **Agents** (:meth:`VirtualNet.add_agent`): an :class:`~syncice.ice.IceAgent`
  with a host candidate per component on its host, a STUN server to gather a
  server-reflexive candidate through its NAT, and a TURN server to gather a
  relayed one. :meth:`VirtualNet.connect` exchanges candidates, runs the
  checks and returns an :class:`Outcome`.

A whole negotiation, a cone NAT against a symmetric one::

    net = VirtualNet(seed=1)
    stun = StunServer(net, ("198.51.100.1", 3478))
    turn = TurnServer(net, ("198.51.100.2", 3478))
    cone = net.add_nat("203.0.113.1", NatBehavior.port_restricted_cone())
    symmetric = net.add_nat("203.0.113.2", NatBehavior.symmetric())
    net.add_host("10.0.0.1", nat=cone)
    net.add_host("10.0.0.2", nat=symmetric)
    a = net.add_agent("a", "10.0.0.1", stun=stun.addr, turn=turn)
    b = net.add_agent("b", "10.0.0.2", stun=stun.addr, turn=turn, controlling=False)
    outcome = net.connect(a, b)
    assert outcome.connected and outcome.relayed

White-box tests of the agent itself (syncice's layer-1 tests) use the same
network with exact delays (``VirtualNet(up=Link(delay=0.001), down=Link())``:
1 ms per datagram), agents built elsewhere (:meth:`VirtualNet.attach`),
:attr:`VirtualNet.filters`, forged datagrams (:meth:`VirtualNet.inject`), a
static NAT (:meth:`VirtualNet.add_static_nat`), the log of what agents sent
(:attr:`VirtualNet.sent`) and per-agent views (:meth:`VirtualNet.events`,
:meth:`VirtualNet.first`, :meth:`VirtualNet.data`).

Whole connections in virtual time: :func:`virtual_time` (from
``syncice.testing``, imported on first use, so that the network above stays
free of threads) runs every :class:`syncice.Connection` started in its block
on a worker driven by a fake clock, over real loopback sockets.

TCP is modelled only where TURN needs it: :meth:`VirtualNet.open_stream`
gives a reliable, ordered byte stream from a host to a :class:`TurnServer`
(through the host's NAT, which maps its source address), with the path's
delays but no loss, duplication or reordering. Mappings of streams never
time out and streams cannot be opened towards NATed hosts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncice.stun import Address
from syncice.testing._link import Datagram, Link
from syncice.testing._nat import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    Nat,
    NatBehavior,
    NatMapping,
    NatStats,
)
from syncice.testing._net import (
    Filter,
    NetStats,
    Receiver,
    Socket,
    Stream,
    VirtualNet,
)
from syncice.testing._peer import Outcome, Peer
from syncice.testing._servers import StunServer, TurnAllocationState, TurnServer

if TYPE_CHECKING:
    from syncice.testing._virtual_time import VirtualTime, virtual_time

__all__ = [
    "ADDRESS_AND_PORT_DEPENDENT",
    "ADDRESS_DEPENDENT",
    "ENDPOINT_INDEPENDENT",
    "Address",
    "Datagram",
    "Filter",
    "Link",
    "Nat",
    "NatBehavior",
    "NatMapping",
    "NatStats",
    "NetStats",
    "Outcome",
    "Peer",
    "Receiver",
    "Socket",
    "Stream",
    "StunServer",
    "TurnAllocationState",
    "TurnServer",
    "VirtualNet",
    "VirtualTime",
    "virtual_time",
]

#: Names imported on first use (PEP 562): they need the worker, its thread
#: and the clock, which the virtual network does not.
_LAZY = {"VirtualTime", "virtual_time"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from syncice.testing import _virtual_time

        return getattr(_virtual_time, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
