// Package deploy holds no code: it is how p4mesh is deployed (systemd
// units, Prometheus configuration, Mininet lab), and its tests check that
// those files agree with the daemons: every flag they pass exists, every
// metric they name is exported.
package deploy
