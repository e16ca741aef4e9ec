"""The NAT lab: network namespaces, NATs, coturn and ICE peers (see netlab.sh)."""
