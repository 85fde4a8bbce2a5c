#!/usr/bin/python3
"""p4mesh on Mininet: the demo's topology, or one's own, with P4Runtime switches.

One host switch per host (p4mesh-switch, or BMv2's simple_switch_grpc when
it is installed or asked for), the VMs as Mininet hosts on its ports, a
Linux bridge as the underlay between the host switches, and the p4mesh
controllers and OHCs as processes, with mutual TLS from `p4meshctl pki lab`.
No OpenFlow controller and no Open vSwitch: the bridge is made with `ip
link`, the switches are P4Runtime targets programmed by the OHCs.

    sudo /usr/bin/python3 deploy/mininet/p4mesh_mininet.py --bin DIR   # CLI
    sudo /usr/bin/python3 deploy/mininet/p4mesh_mininet.py --bin DIR --test
    sudo /usr/bin/python3 deploy/mininet/p4mesh_mininet.py --bin DIR \
        --config c1.yaml --config c2.yaml [--test]

With --config (once per controller) the lab is built from the controllers'
own configurations instead of the demo's: `p4meshctl demo --write DIR
--config ...` lays out the configurations (addresses moved to free loopback
ports) and topology.json (hosts, VMs on their ports, and the pings the
peerings and export policies promise), so the model is read by p4mesh's
own code, not re-implemented here.

`make mininet` builds the binaries and runs this. It needs Debian's
`mininet` package and Debian's /usr/bin/python3 (the one Mininet is
installed for). Everything it starts stops on exit; the logs stay in the
run directory.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from mininet.cli import CLI
from mininet.log import info, setLogLevel
from mininet.net import Mininet
from mininet.node import Switch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
BMV2_JSON = os.path.join(REPO, 'p4', 'v1model', 'build', 'vpc_peering.json')
CPU_PORT = 255
# The underlay carries VXLAN: a VM's 1500-byte frame plus 50 bytes of
# encapsulation must fit.
UNDERLAY_MTU = 9000

BMV2_HELP = """BMv2's simple_switch_grpc is not installed, or p4/v1model/build/vpc_peering.json
is missing. To run on BMv2:
  - install simple_switch_grpc: Debian/Ubuntu packages p4lang-bmv2 from the
    p4lang repository on the openSUSE Build Service
    (https://github.com/p4lang/behavioral-model#installing-bmv2), or build
    github.com/p4lang/behavioral-model with --with-pi;
  - compile the pipeline for it: make p4 (needs p4c);
or run without TARGET=bmv2 to use p4mesh-switch."""


def free_port():
    """A loopback port free a moment ago."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def node_name(vm_id):
    """Mininet's CLI takes node names as words: red-1 is red1."""
    return vm_id.replace('-', '')


class Daemon:
    """A p4mesh process started for the topology, logging to its file."""

    def __init__(self, name, args, logdir, health=None):
        self.name, self.args, self.health = name, args, health
        self.log_path = os.path.join(logdir, name + '.log')
        self.log = open(self.log_path, 'w')
        # A session of its own: Ctrl-C in the Mininet CLI must not reach
        # it, only our stop.
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def readiness(self):
        """(ready, why) from the daemon's /readyz, or its exit."""
        if self.proc.poll() is not None:
            return False, 'exited with status %d (see %s)' % (self.proc.returncode, self.log_path)
        if self.health is None:
            return True, 'no health endpoint'
        try:
            with urllib.request.urlopen('http://%s/readyz' % self.health, timeout=2) as r:
                return True, r.read().decode().strip()
        except urllib.error.HTTPError as e:
            return False, e.read().decode().strip()
        except OSError as e:
            return False, str(e)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class UnderlayBridge(Switch):
    """The underlay: a Linux bridge made with `ip link` (no brctl, no OVS),
    forwarding as soon as its ports are up."""

    def __init__(self, name, **params):
        Switch.__init__(self, name, dpid='1', **params)

    def start(self, controllers):
        self.cmd('ip link add name', self, 'type bridge stp_state 0 forward_delay 0')
        self.cmd('ip link set dev', self, 'mtu', UNDERLAY_MTU)
        self.cmd('sysctl -qw net.ipv6.conf.%s.disable_ipv6=1' % self)
        for intf in self.intfList():
            if intf.name != 'lo':
                self.cmd('ip link set dev', intf, 'mtu', UNDERLAY_MTU, 'master', self, 'up')
        self.cmd('ip link set dev', self, 'up')

    def stop(self, deleteIntfs=True):
        self.cmd('ip link del dev', self)
        Switch.stop(self, deleteIntfs)


class P4RuntimeSwitch(Switch):
    """A host's switch: p4mesh-switch or simple_switch_grpc bound to the
    node's Mininet interfaces (interface NAME-ethN is P4 port N), with its
    P4Runtime server on loopback."""

    def __init__(self, name, lab=None, **params):
        Switch.__init__(self, name, **params)
        self.lab = lab
        self.grpc = '127.0.0.1:%d' % free_port()
        self.daemon = None

    def start(self, controllers):
        ports = {}
        for intf in self.intfList():
            if intf.name == 'lo':
                continue
            ports[self.ports[intf]] = intf.name
            # The switch alone speaks on these links: keep the root
            # namespace's own stack off them.
            self.cmd('sysctl -qw net.ipv6.conf.%s.disable_ipv6=1' % intf)
            self.cmd('ip link set dev', intf, 'arp off')
        self.cmd('ip link set dev', self.lab.uplink(self.name), 'mtu', UNDERLAY_MTU)
        self.daemon = self.lab.start_switch(self.name, self.grpc, ports)

    def stop(self, deleteIntfs=True):
        if self.daemon:
            self.daemon.stop()
        Switch.stop(self, deleteIntfs)


class Lab:
    """One run: configuration, certificates, daemons and the network."""

    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.target = args.target
        self.run = args.run_dir or tempfile.mkdtemp(prefix='p4mesh-mininet-')
        os.makedirs(self.run, exist_ok=True)
        self.logs = os.path.join(self.run, 'logs')
        os.makedirs(self.logs, exist_ok=True)
        self.conf = os.path.join(self.run, 'config')
        self.pki = os.path.join(self.run, 'pki')
        self.daemons = []
        self.net = None
        self.topo = None
        # BMv2's P4Runtime server is plaintext: with it every channel is,
        # on loopback (the OHC has one set of credentials for both sides).
        self.tls = self.target == 'p4mesh'

    def tool(self, name):
        return os.path.join(self.bin, name)

    def tls_args(self, kind, name):
        if not self.tls:
            return []
        base = os.path.join(self.pki, '%s-%s' % (kind, name))
        return ['--tls-cert', base + '.pem', '--tls-key', base + '.key',
                '--tls-ca', os.path.join(self.pki, 'ca.pem')]

    def prepare(self):
        """Writes the demo's configurations, or the lab of the user's
        (p4meshctl knows both), and the lab certificates."""
        cmd = [self.tool('p4meshctl'), 'demo', '--write', self.conf]
        if self.args.config:
            for f in self.args.config:
                cmd += ['--config', os.path.abspath(f)]
        else:
            cmd += ['--controller-addrs', ','.join('127.0.0.1:%d' % free_port() for _ in range(2))]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        if self.args.config:
            print(out.strip(), flush=True)
        with open(os.path.join(self.conf, 'topology.json')) as f:
            self.topo = json.load(f)
        if self.tls:
            cfgs = []
            for c in self.topo['controllers']:
                cfgs += ['--config', os.path.join(self.conf, c['config'])]
            subprocess.run([self.tool('p4meshctl'), 'pki', 'lab', '--dir', self.pki] + cfgs,
                           check=True, stdout=subprocess.DEVNULL)

    def start_controllers(self):
        for c in self.topo['controllers']:
            args = [self.tool('p4mesh-controller'),
                    '--config', os.path.join(self.conf, c['config']),
                    '--data-dir', os.path.join(self.run, 'data', c['name']),
                    '--listen', c['address'], '--peer-grace', '5s']
            self.start_daemon('controller-' + c['name'], args, self.tls_args('controller', c['name']))

    def start_daemon(self, name, args, extra):
        metrics = '127.0.0.1:%d' % free_port()
        d = Daemon(name, args + ['--metrics-addr', metrics] + extra, self.logs, health=metrics)
        self.daemons.append(d)
        return d

    def uplink(self, host):
        h = next(h for h in self.topo['hosts'] if h['id'] == host)
        return '%s-eth%d' % (host, h['uplink_port'])

    def device_id(self, host):
        h = next(h for h in self.topo['hosts'] if h['id'] == host)
        return h.get('device_id') or int(host.lstrip('h'))

    def start_switch(self, host, grpc, ports):
        device_id = self.device_id(host)
        if self.target == 'bmv2':
            args = ['simple_switch_grpc', '--device-id', str(device_id), '--log-file',
                    os.path.join(self.logs, 'bmv2-' + host)]
            for n, ifname in sorted(ports.items()):
                args += ['-i', '%d@%s' % (n, ifname)]
            args += [BMV2_JSON, '--', '--grpc-server-addr', grpc, '--cpu-port', str(CPU_PORT)]
            d = Daemon('switch-' + host, args, self.logs)
            self.daemons.append(d)
            return d
        args = [self.tool('p4mesh-switch'), '--device-id', str(device_id), '--grpc-addr', grpc]
        for n, ifname in sorted(ports.items()):
            args += ['--port', '%d=%s' % (n, ifname)]
        return self.start_daemon('switch-' + host, args, self.tls_args('host', host))

    def start_ohcs(self):
        for h in self.topo['hosts']:
            sw = self.net.get(h['id'])
            args = [self.tool('p4mesh-ohc'), '--host', h['id'], '--switch', sw.grpc,
                    '--device-id', str(self.device_id(h['id']))]
            for c in self.topo['controllers']:
                args += ['--controller', c['address']]
            if self.target == 'bmv2':
                args += ['--device-config', BMV2_JSON]
            self.start_daemon('ohc-' + h['id'], args, self.tls_args('host', h['id']))

    def wait_ready(self, daemons, timeout):
        """Waits until every daemon's /readyz says so; raises with each
        one's last answer when they do not within timeout."""
        deadline = time.time() + timeout
        while True:
            states = {d.name: d.readiness() for d in daemons}
            if all(ok for ok, _ in states.values()):
                return
            dead = [n for n, (ok, why) in states.items() if 'exited' in why]
            if dead or time.time() > deadline:
                lines = ['%s: %s' % (n, why) for n, (ok, why) in sorted(states.items()) if not ok]
                raise RuntimeError('not ready:\n  ' + '\n  '.join(lines))
            time.sleep(0.2)

    def build(self):
        self.net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False)
        ul = self.net.addSwitch('ul', cls=UnderlayBridge)
        for h in self.topo['hosts']:
            sw = self.net.addSwitch(h['id'], cls=P4RuntimeSwitch, lab=self)
            self.net.addLink(sw, ul, port1=h['uplink_port'])
        for v in self.topo['vms']:
            name = node_name(v['id'])
            vm = self.net.addHost(name, ip='%s/%d' % (v['ip'], v['prefix_len']), mac=v['mac'],
                                  defaultRoute='via ' + v['gateway'])
            self.net.addLink(vm, self.net.get(v['host']), port1=0, port2=v['port'],
                             intfName1=name + '-eth0', intfName2='%s-eth%d' % (v['host'], v['port']))

    def configure_vms(self):
        for vm in self.net.hosts:
            vm.cmd('sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1')
            # The switch forwards what it reads: with TX checksum offload
            # a TCP segment would leave with a partial checksum.
            if shutil.which('ethtool'):
                vm.cmd('ethtool -K', vm.defaultIntf(), 'tx off')

    def start(self):
        self.prepare()
        self.start_controllers()
        # The OHCs are told the peering only once both controllers heard
        # each other: ready controllers, then the rest.
        self.wait_ready(list(self.daemons), 30)
        self.build()
        self.net.start()
        self.configure_vms()
        self.start_ohcs()
        self.wait_ready(self.daemons, 60)

    def stop(self):
        # OHCs first, so that they do not log the switches going away as
        # trouble; the switches stop with the network; controllers last.
        for d in self.daemons:
            if d.name.startswith('ohc-'):
                d.stop()
        if self.net is not None:
            self.net.stop()
        for d in self.daemons:
            d.stop()

    def ping(self, src, dst_ip, reply):
        """Whether src reaches dst_ip. An expected reply is retried for a
        while (the last programming may still land); an expected silence
        is three requests, none answered."""
        vm = self.net.get(node_name(src))
        if not reply:
            out = vm.cmd('ping -n -c 3 -i 0.2 -W 1', dst_ip)
            return ' 0 received' not in out
        deadline = time.time() + 20
        while True:
            out = vm.cmd('ping -n -c 1 -W 1', dst_ip)
            if ' 1 received' in out:
                return True
            if time.time() > deadline:
                return False

    def test(self):
        """Pings every expectation of the demo, prints a table, and returns
        whether every one held."""
        configured = {v['id'] for v in self.topo['vms'] if v['configured']}
        rows, ok = [], True
        for p in self.topo['pings']:
            if p['from'] not in configured or p['to'] not in configured:
                continue
            got = self.ping(p['from'], p['to_ip'], p['reply'])
            held = got == p['reply']
            ok = ok and held
            rows.append(('ok' if held else 'FAIL', node_name(p['from']), node_name(p['to']),
                         'reply' if p['reply'] else 'no reply', 'reply' if got else 'no reply', p['why']))
        head = ('', 'from', 'to', 'want', 'got', 'why')
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        for r in [head] + rows:
            print('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return ok


def choose_target(asked):
    bmv2 = shutil.which('simple_switch_grpc') is not None and os.path.exists(BMV2_JSON)
    if asked == 'bmv2' and not bmv2:
        sys.exit(BMV2_HELP)
    if asked == 'auto':
        return 'bmv2' if bmv2 else 'p4mesh'
    return asked


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bin', required=True, help='directory with p4mesh-controller, p4mesh-switch, p4mesh-ohc and p4meshctl')
    ap.add_argument('--target', choices=['auto', 'bmv2', 'p4mesh'], default='auto',
                    help='the host switches: BMv2 simple_switch_grpc, p4mesh-switch, or BMv2 when installed (auto)')
    ap.add_argument('--run-dir', help='configuration, certificates and logs (default: a new directory under /tmp)')
    ap.add_argument('--config', action='append', metavar='FILE',
                    help="a controller's YAML configuration, once per controller of its directory: the lab of these instead of the demo's")
    ap.add_argument('--test', action='store_true', help='no CLI: ping the expectations, print a table, exit 1 on any surprise')
    args = ap.parse_args()
    args.target = choose_target(args.target)
    if os.geteuid() != 0:
        sys.exit('Mininet needs root: run with sudo (make mininet does)')
    setLogLevel('warning' if args.test else 'info')

    # A SIGTERM (a test's timeout, a service stop) tears down like Ctrl-C.
    def terminate(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, terminate)

    lab = Lab(args)
    print('p4mesh on Mininet: target %s, run directory %s' % (args.target, lab.run), flush=True)
    ok = False
    try:
        lab.start()
        if args.test:
            ok = lab.test()
        else:
            if args.config:
                info('*** p4mesh is up: VMs %s\n' % ' '.join(node_name(v['id']) for v in lab.topo['vms']))
            else:
                info('*** p4mesh is up: try red1 ping blue1 (peered), red1 ping red2, red1 ping green1 (not peered: no reply)\n')
            CLI(lab.net)
            ok = True
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print('p4mesh_mininet: %s' % e, file=sys.stderr)
    finally:
        lab.stop()
    print('logs: %s' % lab.logs, flush=True)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
