<?php
// Benchmark (not a test): Fae\Client vs php-memcached on the same 4 local memcached servers,
// both with OPT_LIBKETAMA_COMPATIBLE and OPT_TCP_NODELAY; php-memcached on ASCII, libfae on
// its default meta protocol. Run (release build):
//   cargo build --release -p fae-php
//   php -n -d extension=igbinary -d extension=msgpack -d extension=memcached \
//       -d extension=$PWD/target/release/libfae_php.so tests/php/bench.php [iterations] [unix]
// With `unix` the 4 servers listen on Unix-domain sockets and both clients use
// addServer($path, 0) (no TCP_NODELAY effect).
require __DIR__ . '/lib.php';

$iters = (int)($argv[1] ?? 20000);
$unix = ($argv[2] ?? '') === 'unix';
// One worker thread per server (`-t 1`, as bindings-python/bench.py): each client's connection
// would otherwise land on a different memcached thread, and on a 2-CPU machine where those
// threads run decided a run's ratio (single-get p50 ratios of 0.74–1.33 in three quiet runs
// of one build; 0.97–1.06 with one thread).
$procs = []; for ($i = 0; $i < 4; $i++) $procs[] = $unix ? new Memcached_Socket_Process(['-t', '1']) : new Memcached_Process(['-t', '1']);
function clients(array $procs): array {
    $p = new Memcached();
    $p->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
    $p->setOption(Memcached::OPT_TCP_NODELAY, true);
    $p->setOption(Memcached::OPT_BINARY_PROTOCOL, false);
    $f = new Fae\Client();
    $f->setOption(Fae\Client::OPT_LIBKETAMA_COMPATIBLE, true);
    $f->setOption(Fae\Client::OPT_TCP_NODELAY, true);
    foreach ($procs as $m) {
        [$h, $port] = $m instanceof Memcached_Socket_Process ? [$m->path(), 0] : ['127.0.0.1', $m->port];
        $p->addServer($h, $port); $f->addServer($h, $port);
    }
    return ['php-memcached' => $p, 'fae' => $f];
}
$cl = clients($procs);
$value = str_repeat('v', 100);
$keys = []; for ($i = 0; $i < 1000; $i++) $keys[] = "bench:key:$i";
$cl['fae']->setMulti(array_fill_keys($keys, $value));
$multi = array_slice($keys, 0, 100);

function pct(array $t, float $p): float { sort($t); return $t[(int)min(count($t) - 1, floor($p * count($t)))]; }
// Timed calls; the samples of every round are pooled per client and op.
// The process's CPU time in µs, [user, system]: what the client itself spends, which waits for
// the CPU on a busy machine do not inflate as they do wall-clock latency. The user part is the
// clients' own code (and PHP's loop); the system part is mostly the two syscalls of a get.
function cpu_us(): array {
    $r = getrusage();
    return [$r['ru_utime.tv_sec'] * 1e6 + $r['ru_utime.tv_usec'], $r['ru_stime.tv_sec'] * 1e6 + $r['ru_stime.tv_usec']];
}
function run(callable $f, int $n, int $from, ?array &$acc): void {
    [$u, $sy] = cpu_us();
    $start = hrtime(true);
    for ($i = $from; $i < $from + $n; $i++) { $s = hrtime(true); $f($i); $acc['t'][] = (hrtime(true) - $s) / 1000; }
    $acc['ns'] = ($acc['ns'] ?? 0) + (hrtime(true) - $start);
    [$u2, $sy2] = cpu_us();
    $acc['user'] = ($acc['user'] ?? 0) + ($u2 - $u);
    $acc['sys'] = ($acc['sys'] ?? 0) + ($sy2 - $sy);
}
// 20 rounds, each client in turn doing a twentieth of its calls, so that drift on a shared
// machine hits both clients alike; p50/p99 over all samples, ops/s = calls / time in calls.
$rounds = 20;
$acc = [];
foreach ($cl as $name => $c) {                                   // warm-up, untimed
    for ($i = 0; $i < min(2000, $iters); $i++) { $c->get($keys[$i % 1000]); $c->set($keys[$i % 1000], $value); }
    for ($i = 0; $i < 200; $i++) $c->getMulti($multi);
}
for ($r = 0; $r < $rounds; $r++) {
    foreach ($cl as $name => $c) {
        $n = intdiv($iters, $rounds);
        run(fn($i) => $c->get($keys[$i % 1000]), $n, $r * $n, $acc[$name]['get']);
        run(fn($i) => $c->set($keys[$i % 1000], $value), $n, $r * $n, $acc[$name]['set']);
        run(fn($i) => $c->getMulti($multi), max(1, intdiv($n, 10)), 0, $acc[$name]['multi']);
    }
}
$res = [];
foreach ($cl as $name => $c) {
    check($c->get($keys[0]) === $value && count($c->getMulti($multi)) === 100, "$name answers correctly");
    foreach ($acc[$name] as $op => $a) {
        $res[$name][$op] = ['p50' => pct($a['t'], 0.5), 'p99' => pct($a['t'], 0.99),
            'ops' => count($a['t']) / ($a['ns'] / 1e9), 'cpu' => ($a['user'] + $a['sys']) / count($a['t']),
            'user' => $a['user'] / count($a['t']), 'sys' => $a['sys'] / count($a['t'])];
    }
}
$f = $res['fae']; $p = $res['php-memcached'];
// Targets (issue 15): latencies at most this × php-memcached's; throughput (a negative
// target) at least |target| × php-memcached's.
$rows = [
    ['get p50 (µs)', $f['get']['p50'], $p['get']['p50'], 0.95],
    ['get p99 (µs)', $f['get']['p99'], $p['get']['p99'], null],
    ['set p50 (µs)', $f['set']['p50'], $p['set']['p50'], null],
    ['getMulti 100 keys p50 (µs)', $f['multi']['p50'], $p['multi']['p50'], 0.9],
    ['get ops/s', $f['get']['ops'], $p['get']['ops'], -1.0],
    ['getMulti ops/s', $f['multi']['ops'], $p['multi']['ops'], null],
    ['get, client CPU µs per call', $f['get']['cpu'], $p['get']['cpu'], null],
    // A get's p50 can only be 5 % under php-memcached's if the client saves that much: its
    // user time bounds what any client-side work can take off.
    ['get, client user CPU µs per call', $f['get']['user'], $p['get']['user'], null],
    ['get, client system CPU µs per call', $f['get']['sys'], $p['get']['sys'], null],
    ['getMulti, client CPU µs per call', $f['multi']['cpu'], $p['multi']['cpu'], null],
];
printf("| metric | Fae\\Client | php-memcached | ratio fae/php | target |\n|---|---|---|---|---|\n");
foreach ($rows as [$name, $a, $b, $target]) {
    $ratio = $a / $b;
    $t = match (true) {
        $target === null => '',
        $target < 0 => sprintf('≥ %.2f: %s', -$target, $ratio >= -$target ? 'PASS' : 'MISS'),
        default => sprintf('≤ %.2f: %s', $target, $ratio <= $target ? 'PASS' : 'MISS'),
    };
    printf("| %s | %s | %s | %.3f | %s |\n", $name, number_format($a, $a > 1000 ? 0 : 1), number_format($b, $b > 1000 ? 0 : 1), $ratio, $t);
}
printf("(%d calls per op and client (getMulti: a tenth), in %d interleaved rounds, samples pooled; 4 local memcached (-t 1) on %s, 100-byte values)\n",
    $iters, $rounds, $unix ? 'Unix-domain sockets' : '127.0.0.1 TCP');
foreach ($procs as $m) $m->stop();
