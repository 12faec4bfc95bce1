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
$procs = []; for ($i = 0; $i < 4; $i++) $procs[] = $unix ? new Memcached_Socket_Process() : new Memcached_Process();
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
function run(callable $f, int $n): array {
    for ($i = 0; $i < min(2000, $n); $i++) $f($i);       // warm-up
    $t = []; $start = hrtime(true);
    for ($i = 0; $i < $n; $i++) { $s = hrtime(true); $f($i); $t[] = (hrtime(true) - $s) / 1000; }
    $total = (hrtime(true) - $start) / 1e9;
    return ['p50' => pct($t, 0.5), 'p99' => pct($t, 0.99), 'ops' => $n / $total];
}
$res = [];
foreach ([1, 2, 3] as $round) {       // interleave clients, keep the best round of each
    foreach ($cl as $name => $c) {
        $g = run(fn($i) => $c->get($keys[$i % 1000]), $iters);
        $s = run(fn($i) => $c->set($keys[$i % 1000], $value), $iters);
        $m = run(fn($i) => $c->getMulti($multi), intdiv($iters, 10));
        check($c->get($keys[0]) === $value && count($c->getMulti($multi)) === 100, "$name answers correctly");
        foreach (['get' => $g, 'set' => $s, 'multi' => $m] as $op => $r) {
            if (!isset($res[$name][$op]) || $r['p50'] < $res[$name][$op]['p50']) $res[$name][$op] = $r;
        }
    }
}
$f = $res['fae']; $p = $res['php-memcached'];
$rows = [
    ['get p50 (µs)', $f['get']['p50'], $p['get']['p50'], 1.0],
    ['get p99 (µs)', $f['get']['p99'], $p['get']['p99'], null],
    ['set p50 (µs)', $f['set']['p50'], $p['set']['p50'], null],
    ['getMulti 100 keys p50 (µs)', $f['multi']['p50'], $p['multi']['p50'], 0.7],
    ['get ops/s', $f['get']['ops'], $p['get']['ops'], null],
    ['getMulti ops/s', $f['multi']['ops'], $p['multi']['ops'], null],
];
printf("| metric | Fae\\Client | php-memcached | ratio fae/php | target |\n|---|---|---|---|---|\n");
foreach ($rows as [$name, $a, $b, $target]) {
    $ratio = $a / $b;
    $t = $target === null ? '' : sprintf('≤ %.1f: %s', $target, $ratio <= $target ? 'PASS' : 'MISS');
    printf("| %s | %s | %s | %.3f | %s |\n", $name, number_format($a, $a > 1000 ? 0 : 1), number_format($b, $b > 1000 ? 0 : 1), $ratio, $t);
}
printf("(%d iterations per op, best p50 of 3 interleaved rounds, 4 local memcached on %s, 100-byte values)\n",
    $iters, $unix ? 'Unix-domain sockets' : '127.0.0.1 TCP');
foreach ($procs as $m) $m->stop();
