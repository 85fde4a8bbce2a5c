package etcdstore

// StopKeepAlive stops renewing r's lease without revoking it: r's process
// looks dead to etcd, but its client still works.
func StopKeepAlive(r *Replica) { r.session.Orphan() }
