<?php
// One client's call loop, for scripts/bench-calls.py (run under callgrind or strace):
//   php ... tests/php/bench_loop.php CLIENT OP N    (servers in FAE_BENCH_SERVERS)
// CLIENT: fae or php-memcached (both OPT_LIBKETAMA_COMPATIBLE, OPT_TCP_NODELAY, ASCII for
// php-memcached); OP: get or getMulti (100 keys). 1000 keys of 100 bytes, one untimed call of
// each op, then N calls.
[$_, $who, $op, $n] = $argv;
$n = (int)$n;
$cls = $who === 'fae' ? Fae\Client::class : Memcached::class;
$c = new $cls();
$c->setOption(constant("$cls::OPT_LIBKETAMA_COMPATIBLE"), true);
$c->setOption(constant("$cls::OPT_TCP_NODELAY"), true);
if ($who !== 'fae') $c->setOption(Memcached::OPT_BINARY_PROTOCOL, false);
// Generous timeouts for both: under valgrind a call runs ~50 times slower than it does natively.
$c->setOption(constant("$cls::OPT_CONNECT_TIMEOUT"), 10000);
$c->setOption(constant("$cls::OPT_POLL_TIMEOUT"), 10000);
foreach (explode(',', getenv('FAE_BENCH_SERVERS')) as $a) {
    [$h, $p] = explode(':', $a);
    $c->addServer($h, (int)$p);
}
$keys = []; for ($i = 0; $i < 1000; $i++) $keys[] = "bench:key:$i";
$c->setMulti(array_fill_keys($keys, str_repeat('v', 100)));
$multi = array_slice($keys, 0, 100);
if ($c->get($keys[0]) === false || count($c->getMulti($multi)) !== 100) exit("$who: wrong answers\n");
if ($op === 'get') { for ($i = 0; $i < $n; $i++) $c->get($keys[$i % 1000]); }
else { for ($i = 0; $i < $n; $i++) $c->getMulti($multi); }
