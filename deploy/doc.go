// Package deploy holds no code: it is how p4mesh is deployed (systemd
// units, Prometheus configuration, Mininet lab), and its tests check that
// those files agree with the daemons: every flag they pass exists, every
// metric they name is exported, and the on-prem FRR example (frr/) peers
// with the controller's speaker as its bgp snippet configures it.
package deploy
