<?php
// The PHP side of the cross-language test (tests/cross/run.sh).
//
//   php php_side.php write SERVERS   fae_* keys with Fae\Client, pmc_* keys with php-memcached
//                                    (if loaded), both with php-memcached's default settings
//                                    (FastLZ above 2000 bytes); arrays with SERIALIZER_JSON
//   php php_side.php read SERVERS    the py_* keys Python's serde="interop" wrote, and the
//                                    fae_* / pmc_* keys, read back with both
//   php php_side.php place SERVERS N OUT   where place0..N-1 live, one line per key:
//                                    "key fae pmc fae_ketama pmc_ketama fae_hashed_prefix"
//                                    (default placement, then OPT_LIBKETAMA_COMPATIBLE), and
//                                    stores each key through Fae\Client so the others find it
//
// Prints "PASS php: …" / "FAIL php: …" lines; run.sh counts them.

use Fae\Client;

[$_, $mode, $servers] = $argv;
$addrs = array_map(fn($a) => [explode(':', $a)[0], (int)explode(':', $a)[1]], explode(',', $servers));
$have_pmc = extension_loaded('memcached'); // not class_exists: fae provides Memcached when php-memcached is absent

function check(string $name, bool $ok, string $detail = ''): void {
    echo ($ok ? 'PASS' : 'FAIL') . " php: $name" . ($ok ? '' : ": $detail") . "\n";
}

function client(string $class, array $addrs, array $opts = []) {
    $c = new $class();
    foreach ($opts as $o => $v) $c->setOption($o, $v);
    $c->addServers($addrs);
    return $c;
}

/** The values PHP writes; the Python side holds the same list. */
function php_values(): array {
    return [
        'str' => 'hello from php',
        'utf8' => 'héllo wörld',
        'big' => str_repeat('fae cross-language ', 300),
        'huge' => str_repeat('0123456789abcdef', 4200) . 'tail',
        'int' => 42,
        'neg' => -7,
        'maxint' => PHP_INT_MAX,
        'float' => 3.25,
        'tenth' => 0.1,
        'inf' => INF,
        'true' => true,
        'false' => false,
    ];
}

function php_arrays(): array {
    return [
        'json' => ['a' => [1, 2], 'b' => null, 'c' => 'x'],
        'bigjson' => array_fill(0, 500, 'cross'),
    ];
}

/** The values Python writes (tests/cross/py_side.py), as PHP reads them. */
function py_values(): array {
    return [
        'str' => 'héllo from python',
        'bytes' => "raw \x00\x01 bytes",
        'int' => 1234567890123,
        'neg' => -5,
        'float' => 2.5,
        'tenth' => 0.1,
        'inf' => INF,
        'true' => true,
        'false' => false,
        'dict' => ['k' => [1, 2], 'n' => null],
        'list' => [1, 'two', 3.5],
        'big' => str_repeat('compress me ', 500),
        'bigbytes' => str_repeat('z', 10000),
    ];
}

$json = [Client::OPT_SERIALIZER => Client::SERIALIZER_JSON_ARRAY];
switch ($mode) {
case 'write':
    $writers = ['fae' => [Client::class, $json]];
    if ($have_pmc) $writers['pmc'] = [Memcached::class, [Memcached::OPT_SERIALIZER => Memcached::SERIALIZER_JSON_ARRAY]];
    foreach ($writers as $ns => [$class, $arrays]) {
        $plain = client($class, $addrs);
        foreach (php_values() as $k => $v) check("$ns set $k", $plain->set("{$ns}_$k", $v) === true);
        $j = client($class, $addrs, $arrays);
        foreach (php_arrays() as $k => $v) check("$ns set $k", $j->set("{$ns}_$k", $v) === true);
    }
    break;

case 'read':
    $readers = ['fae' => client(Client::class, $addrs, $json)];
    if ($have_pmc) $readers['pmc'] = client(Memcached::class, $addrs, [Memcached::OPT_SERIALIZER => Memcached::SERIALIZER_JSON_ARRAY]);
    foreach ($readers as $ns => $c) {
        // Each PHP client reads what the other wrote (php-memcached's FastLZ level 2 for "huge").
        foreach (array_keys($readers) as $writer) {
            foreach (php_values() + php_arrays() as $k => $want) {
                $got = $c->get("{$writer}_$k");
                check("$ns reads {$writer}_$k", $got === $want, var_export($got, true));
            }
        }
        foreach (py_values() as $k => $want) {
            $got = $c->get("py_$k");
            check("$ns reads py_$k", $got === $want, var_export($got, true) . ' (result ' . $c->getResultCode() . ' ' . $c->getResultMessage() . ')');
        }
    }
    break;

case 'place':
    [, , , $n, $out] = $argv;
    $ketama = [Client::OPT_LIBKETAMA_COMPATIBLE => true];
    $fae = [client(Client::class, $addrs), client(Client::class, $addrs, $ketama)];
    $pmc = $have_pmc ? [client(Memcached::class, $addrs), client(Memcached::class, $addrs, [Memcached::OPT_LIBKETAMA_COMPATIBLE => true])] : $fae;
    // A hashed prefix places by "app:" . key, as Python's key_prefix does.
    $hashed = client(Client::class, $addrs, $ketama + [Client::OPT_PREFIX_KEY => 'app:', Client::OPT_HASH_WITH_PREFIX_KEY => true]);
    $name = fn($c, $k) => ($s = $c->getServerByKey($k)) ? "{$s['host']}:{$s['port']}" : 'none';
    $lines = [];
    $stored = 0;
    for ($i = 0; $i < (int)$n; $i++) {
        $k = "place$i";
        $lines[] = implode(' ', [$k, $name($fae[0], $k), $name($pmc[0], $k), $name($fae[1], $k), $name($pmc[1], $k), $name($hashed, $k)]);
        $stored += $fae[0]->set($k, "v$i") ? 1 : 0;
    }
    file_put_contents($out, implode("\n", $lines) . "\n");
    check("stores $n placement keys", $stored === (int)$n, "$stored stored");
    // Our extension and php-memcached read each other's keys under a prefix that is not
    // hashed (both default to OPT_HASH_WITH_PREFIX_KEY off), so placement agrees there too.
    if ($have_pmc) {
        $fp = client(Client::class, $addrs, $ketama + [Client::OPT_PREFIX_KEY => 'ns:']);
        $pp = client(Memcached::class, $addrs, [Memcached::OPT_LIBKETAMA_COMPATIBLE => true, Memcached::OPT_PREFIX_KEY => 'ns:']);
        $bad = 0;
        for ($i = 0; $i < 50; $i++) {
            $fp->set("pfx$i", "f$i");
            $pp->set("qfx$i", "p$i");
            $bad += ($pp->get("pfx$i") === "f$i" ? 0 : 1) + ($fp->get("qfx$i") === "p$i" ? 0 : 1);
        }
        check('prefixed keys read across Fae\Client and php-memcached', $bad === 0, "$bad misses");
    }
    break;

default:
    fwrite(STDERR, "unknown mode $mode\n");
    exit(2);
}
