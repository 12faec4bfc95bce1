<?php
// The PHP extension's tests against real memcached. Run:
//   php -n -d extension=igbinary -d extension=msgpack -d extension=memcached \
//       -d extension=$PWD/target/debug/libfae_php.so tests/php/run.php
// (php-memcached and its igbinary/msgpack dependencies are optional: the interop tests run
// only when the Memcached class is loaded.) Prints "N passed, N failed".
require __DIR__ . '/lib.php';
use Fae\Client;

if (!extension_loaded('fae')) { fwrite(STDERR, "the fae extension is not loaded\n"); exit(2); }
$root = dirname(__DIR__, 2);

$mc = new Memcached_Process(['-I', '2m']);
$mc2 = new Memcached_Process(['-I', '2m']);
$m = new Client(null, ['servers' => [$mc->addr()]]);

test('types round trip', function () use ($m) {
    $obj = new stdClass; $obj->a = 1;
    $cases = ['s' => 'hello', 'empty' => '', 'bin' => "\x00\xff\r\n", 'i' => 42, 'neg' => -7, 'max' => PHP_INT_MAX,
              'd' => 1.5, 'tiny' => 0.1, 'inf' => INF, 'ninf' => -INF, 'nan' => NAN, 't' => true, 'f' => false,
              'arr' => [1, 'two' => [3]], 'null' => null, 'obj' => $obj];
    foreach ($cases as $k => $v) {
        eq($m->set("t:$k", $v), true, "set $k");
        $got = $m->get("t:$k");
        if (is_object($v)) { check($got == $v, "get $k"); } else { eq($got, $v, "get $k"); }
    }
    eq($m->get('t:absent'), false, 'miss is false');
    eq($m->getResultCode(), Client::RES_NOTFOUND, 'miss code');
    eq($m->getResultMessage(), 'NOT FOUND', 'miss message');
});

test('constants match php-memcached', function () {
    eq(Client::OPT_LIBKETAMA_COMPATIBLE, 16, 'OPT_LIBKETAMA_COMPATIBLE');
    eq(Client::OPT_PREFIX_KEY, -1002, 'OPT_PREFIX_KEY');
    eq(Client::RES_PAYLOAD_FAILURE, -1001, 'RES_PAYLOAD_FAILURE');
    eq(Client::GET_EXTENDED, 2, 'GET_EXTENDED');
    if (extension_loaded('memcached')) {
        $r = new ReflectionClass('Memcached'); $ours = new ReflectionClass(Client::class);
        $same = 0; $diff = [];
        foreach ($r->getConstants() as $name => $v) {
            if (!$ours->hasConstant($name)) continue;
            if ($ours->getConstant($name) === $v || str_starts_with($name, 'HAVE_')) $same++; else $diff[] = $name;
        }
        eq($diff, [], 'constants shared with Memcached have the same values');
        check($same > 100, "at least 90 shared constants ($same)");
    }
});

test('commands', function () use ($m) {
    $m->setOption(Client::OPT_COMPRESSION, false);
    eq($m->add('c:a', 'x'), true, 'add');
    eq($m->add('c:a', 'y'), false, 'add existing');
    eq($m->getResultCode(), Client::RES_NOTSTORED, 'add existing code');
    eq($m->replace('c:none', 'y'), false, 'replace missing');
    eq($m->replace('c:a', 'z'), true, 'replace');
    eq($m->append('c:a', '>'), true, 'append');
    eq($m->prepend('c:a', '<'), true, 'prepend');
    eq($m->get('c:a'), '<z>', 'after append/prepend');
    $x = $m->get('c:a', null, Client::GET_EXTENDED);
    check(is_array($x) && $x['value'] === '<z>' && $x['cas'] > 0, 'GET_EXTENDED');
    eq($m->cas($x['cas'], 'c:a', 'new'), true, 'cas');
    eq($m->cas($x['cas'], 'c:a', 'newer'), false, 'stale cas');
    eq($m->getResultCode(), Client::RES_DATA_EXISTS, 'stale cas code');
    eq($m->touch('c:a', 100), true, 'touch');
    eq($m->touch('c:none', 100), false, 'touch missing');
    eq($m->delete('c:a'), true, 'delete');
    eq($m->delete('c:a'), false, 'delete missing');
    eq($m->getResultCode(), Client::RES_NOTFOUND, 'delete missing code');
    eq($m->increment('c:n'), false, 'incr missing');
    eq($m->increment('c:n', 5, 100, 60), 100, 'incr with initial creates');
    eq($m->increment('c:n', 5, 100, 60), 105, 'incr');
    eq($m->decrement('c:n', 200), 0, 'decr floors at 0');
    eq($m->decrement('c:m', 1, 7), 7, 'decr with initial');
    $m->setOption(Client::OPT_COMPRESSION, true);
    eq(@$m->append('c:m', 'x'), null, 'append with compression on is refused like php-memcached');
    eq(@$m->increment('c:n', -1), false, 'negative offset: false');
    eq(error_get_last()['message'] ?? '', Client::class . '::increment(): offset cannot be a negative value', 'with php-memcached\'s warning');
    eq($m->setMulti(['m1' => 1, 'm2' => 'two', 'm3' => [3]], 60), true, 'setMulti');
    eq($m->getMulti(['m3', 'nope', 'm1', 'm2']), ['m3' => [3], 'm1' => 1, 'm2' => 'two'], 'getMulti in request order');
    eq($m->getMulti(['m1', 'nope'], Client::GET_PRESERVE_ORDER), ['m1' => 1, 'nope' => null], 'GET_PRESERVE_ORDER');
    $ext = $m->getMulti(['m1'], Client::GET_EXTENDED);
    check(isset($ext['m1']['cas']) && $ext['m1']['value'] === 1, 'getMulti GET_EXTENDED');
    eq($m->deleteMulti(['m1', 'nope']), ['m1' => true, 'nope' => Client::RES_NOTFOUND], 'deleteMulti');
    eq($m->set('123', 'numeric key'), true, 'numeric key');
    eq($m->getMulti([123]), [123 => 'numeric key'], 'numeric key in getMulti');
    // A string key that is a number comes back as an int key (PHP's array rule), whether the
    // result reuses the caller's string or not.
    $r = $m->getMulti(['123', 'm3', 'nope']);
    check(array_keys($r) === [123, 'm3'] && $r[123] === 'numeric key', 'numeric string key in getMulti is an int key');
    eq($m->getMulti(['123', 'nope'], Client::GET_PRESERVE_ORDER), [123 => 'numeric key', 'nope' => null], 'numeric string key with GET_PRESERVE_ORDER');
    // Arrays are read slot by slot: a packed list with holes, a hash, integer and non-UTF-8 keys.
    $list = ['m3', 'gone', 'm2']; unset($list[1]);
    eq($m->getMulti($list), ['m3' => [3], 'm2' => 'two'], 'getMulti of a list with a hole');
    eq($m->getMulti(['x' => 'm2', 7 => 'm3', "\xff" => 'nope']), ['m2' => 'two', 'm3' => [3]], 'getMulti of a hash: its values');
    $h = ['a' => 'm2', 'b' => 'gone', 'c' => 'm3']; unset($h['b']);
    eq($m->getMulti($h), ['m2' => 'two', 'm3' => [3]], 'getMulti of a hash with a hole');
    $sm = [5 => 'five', "k\xff" => 'binary', 'six' => 6]; unset($sm[5]); $sm[9] = 'nine';
    eq($m->setMulti($sm), true, 'setMulti of a hash with a hole and integer keys');
    eq($m->getMulti(['9', "k\xff", 'six', '5']), [9 => 'nine', "k\xff" => 'binary', 'six' => 6], 'each under its own key');
});

// An unserializer runs user code, which may call the very client whose get is decoding it:
// by then that get's connection is back in its pool (one connection only here).
class FaeReenter { public $inner = null; public function __wakeup(): void { $this->inner = $GLOBALS['fae_reenter']->get('re:plain'); } }
test('an unserializer that calls the client', function () use ($mc) {
    $c = $GLOBALS['fae_reenter'] = new Client(null, ['servers' => [$mc->addr()], 'max_connections' => 1, 'timeouts' => ['io_ms' => 500]]);
    eq([$c->set('re:plain', 'p'), $c->set('re:obj', new FaeReenter())], [true, true], 'stored');
    $t = hrtime(true);
    $got = $c->get('re:obj');
    check($got instanceof FaeReenter && $got->inner === 'p', 'get: the nested get answered');
    check((hrtime(true) - $t) / 1e6 < 400, 'get: no wait for the connection');
    $got = $c->get('re:obj', null, Client::GET_EXTENDED);
    check($got['value']->inner === 'p' && $got['cas'] > 0, 'GET_EXTENDED too');
    $got = $c->getMulti(['re:obj', 're:plain']);
    check($got['re:obj']->inner === 'p' && $got['re:plain'] === 'p', 'getMulti too');
});

test('bad input', function () use ($m) {
    eq($m->set('has space', 1), false, 'key with space');
    eq($m->getResultCode(), Client::RES_BAD_KEY_PROVIDED, 'bad key code');
    eq($m->get(str_repeat('k', 251)), false, 'long key');
    eq($m->get(''), false, 'empty key');
    eq($m->set("a\r\nset evil 0 0 1", 1), false, 'injection key');
    eq($m->get('evil'), false, 'nothing injected');
    $m->setOption(Client::OPT_COMPRESSION, false);
    eq($m->set('big', random_bytes(2 * 1024 * 1024)), false, 'over max_value_size');
    eq($m->getResultCode(), Client::RES_E2BIG, 'E2BIG');
    $m->setOption(Client::OPT_COMPRESSION, true);
    eq($m->setOption(Client::OPT_BINARY_PROTOCOL, true), true, 'binary protocol accepted (served over meta)');
    eq($m->getOption(Client::OPT_BINARY_PROTOCOL), 1, 'and reported as set');
    eq($m->setOption(Client::OPT_BINARY_PROTOCOL, false), true, 'binary protocol off');
    eq(@$m->setOption(Client::OPT_USE_UDP, true), false, 'UDP refused');
    eq($m->getResultCode(), Client::RES_NOT_SUPPORTED, 'unsupported code');
    eq($m->getResultMessage(), 'ACTION NOT SUPPORTED', 'result message is php-memcached\'s text');
    check(str_contains($m->getLastErrorMessage(), 'UDP'), 'last error message says why');
    eq($m->getLastErrorCode(), Client::RES_NOT_SUPPORTED, 'last error code');
    eq($m->setOption(Client::OPT_USE_UDP, false), true, 'default value accepted');
    eq(@$m->setOption(Client::OPT_DISTRIBUTION, 3), false, 'random distribution refused');
    eq(@$m->setOption(12345, 1), false, 'unknown option');
    eq(@$m->setOption(Client::OPT_USER_FLAGS, 70000), false, 'user flags range');
    try { new Client(null, ['servers' => ['127.0.0.1:1'], 'nope' => 1]); check(false, 'bad config throws'); }
    catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'nope'), 'bad config names the key'); }
    try { $m->routeFor('k', 'explode'); check(false, 'bad op throws'); } catch (Fae\Exception $e) { check(true, 'bad op throws'); }
    try { $m->set([], 1); check(false, 'array key throws'); } catch (TypeError $e) { check(true, 'array key TypeError'); }
    $e = new Client();
    eq($e->get('x'), false, 'no servers');
    eq($e->getResultCode(), Client::RES_NO_SERVERS, 'no servers code');
    eq($m->get('m2'), 'two', 'nothing lost after bad input');
});

test('dead server fails fast with a code', function () {
    $port = free_port();
    $d = new Client(null, ['servers' => ["127.0.0.1:$port"], 'timeouts' => ['connect_ms' => 100, 'io_ms' => 200]]);
    $t = microtime(true);
    eq($d->set('k', 1), false, 'set on dead server');
    check(in_array($d->getResultCode(), [Client::RES_CONNECTION_FAILURE, Client::RES_TIMEOUT, Client::RES_SERVER_TEMPORARILY_DISABLED], true), 'dead server code ' . $d->getResultCode());
    check(microtime(true) - $t < 1.0, 'bounded');
    eq($d->getMulti(['a', 'b']), false, 'getMulti all failed');
});

test('ByKey and prefix', function () use ($mc, $mc2) {
    $c = new Client(null, ['servers' => [$mc->addr(), $mc2->addr()]]);
    $a = new Client(); $a->addServer('127.0.0.1', $mc->port);
    $b = new Client(); $b->addServer('127.0.0.1', $mc2->port);
    eq($c->setByKey('group', 'bk', 'v'), true, 'setByKey');
    $srv = $c->getServerByKey('group');
    $home = $srv['port'] === $mc->port ? $a : $b;
    eq($home->get('bk'), 'v', 'stored on the server key server');
    eq($c->getByKey('group', 'bk'), 'v', 'getByKey');
    eq($c->getMultiByKey('group', ['bk']), ['bk' => 'v'], 'getMultiByKey');
    eq($c->incrementByKey('group', 'bn', 1, 5), 5, 'incrementByKey initial');
    eq($c->deleteByKey('group', 'bk'), true, 'deleteByKey');
    $c->setOption(Client::OPT_PREFIX_KEY, 'app:');
    eq($c->set('p', 'pv'), true, 'prefixed set');
    $plain = new Client(null, ['servers' => [$mc->addr(), $mc2->addr()]]);
    eq($plain->get('app:p'), 'pv', 'prefix is part of the stored key');
    eq($c->getServerByKey('p'), $plain->getServerByKey('p'), 'prefix is not hashed');
    eq($c->getMulti(['p']), ['p' => 'pv'], 'prefixed getMulti returns unprefixed keys');
    eq($c->getOption(Client::OPT_PREFIX_KEY), 'app:', 'getOption prefix');
});

test('persistent clients', function () use ($mc) {
    $a = new Client('pool1');
    check($a->isPersistent() && $a->isPristine(), 'first is pristine');
    if (!count($a->getServerList())) $a->addServer('127.0.0.1', $mc->port);
    $b = new Client('pool1');
    check(!$b->isPristine(), 'second reuses');
    eq(count($b->getServerList()), 1, 'servers shared');
    eq($b->set('pk', 1), true, 'works');
    check(!(new Client())->isPersistent(), 'no id: not persistent');
});

test('stats, version, flush, quit', function () use ($m, $mc) {
    $s = $m->getStats();
    check(isset($s[$mc->addr()]['pid']) && is_int($s[$mc->addr()]['pid']), 'getStats');
    check(isset($m->getStats('settings')[$mc->addr()]['maxbytes']), 'getStats settings');
    check(str_starts_with($m->getVersion()[$mc->addr()], '1.'), 'getVersion');
    eq($m->routeFor('x', 'set'), [$mc->addr()], 'routeFor');
    eq($m->quit(), true, 'quit');
    eq($m->set('after-quit', 1), true, 'reconnects after quit');
    eq($m->flush(), true, 'flush');
    eq($m->get('after-quit'), false, 'flushed');
});

test('placement equals the golden vectors', function () use ($root) {
    $servers = ['127.0.0.1:21211', '127.0.0.1:21212', '127.0.0.1:21213', '127.0.0.1:21214'];
    $files = [
        'php-memcached-default.csv' => [[], [1, 1, 1, 1]],
        'libmemcached.csv' => [[Client::OPT_LIBKETAMA_COMPATIBLE => true], [1, 1, 1, 1]],
        'libmemcached_w1234.csv' => [[Client::OPT_LIBKETAMA_COMPATIBLE => true], [1, 2, 3, 4]],
        'libmemcached-ketama.csv' => [[Client::OPT_DISTRIBUTION => Client::DISTRIBUTION_CONSISTENT], [1, 1, 1, 1]],
    ];
    foreach ($files as $file => [$opts, $weights]) {
        $c = new Client();
        eq($c->setOptions($opts), true, "$file options");
        foreach ($servers as $i => $s) $c->addServer('127.0.0.1', (int)substr($s, -5), $weights[$i]);
        $rows = array_map('str_getcsv', array_slice(file("$root/tests/placement/$file", FILE_IGNORE_NEW_LINES), 1));
        $bad = 0;
        foreach ($rows as [$key, $want]) {
            $got = $c->getServerByKey($key);
            if ("{$got['host']}:{$got['port']}" !== $want) $bad++;
        }
        eq($bad, 0, "$file: " . count($rows) . ' keys');
    }
    if (extension_loaded('memcached')) {
        // Combinations no golden file has: compare with php-memcached itself.
        $combos = [
            [Memcached::OPT_HASH => Memcached::HASH_MD5],
            [Memcached::OPT_HASH => Memcached::HASH_FNV1A_32, Memcached::OPT_DISTRIBUTION => Memcached::DISTRIBUTION_CONSISTENT],
            [Memcached::OPT_LIBKETAMA_COMPATIBLE => true, Memcached::OPT_DISTRIBUTION => Memcached::DISTRIBUTION_CONSISTENT],
            [Memcached::OPT_DISTRIBUTION => Memcached::DISTRIBUTION_CONSISTENT, Memcached::OPT_LIBKETAMA_COMPATIBLE => true],
            [Memcached::OPT_HASH => Memcached::HASH_CRC],
            [Memcached::OPT_HASH => Memcached::HASH_MURMUR, Memcached::OPT_DISTRIBUTION => Memcached::DISTRIBUTION_CONSISTENT],
        ];
        foreach ($combos as $i => $opts) {
            $p = new Memcached(); $f = new Client();
            $p->setOptions($opts); eq($f->setOptions($opts), true, "combo $i options");
            foreach ($servers as $s) { $p->addServer('127.0.0.1', (int)substr($s, -5)); $f->addServer('127.0.0.1', (int)substr($s, -5)); }
            $bad = 0;
            for ($k = 0; $k < 2000; $k++) {
                $a = $p->getServerByKey("key:$k"); $b = $f->getServerByKey("key:$k");
                if ($a['port'] !== $b['port']) $bad++;
            }
            eq($bad, 0, "combo $i equals php-memcached on 2000 keys");
        }
    }
});

test('setBucket places keys as php-memcached does', function () {
    if (!extension_loaded('memcached')) { fwrite(STDERR, "skip: php-memcached not loaded\n"); return; }
    $ports = [21901, 21902, 21903, 21904]; // never dialled: placement only
    $maps = [
        'balanced 1024' => [array_map(fn($b) => $b % 4, range(0, 1023)), []],
        'runs 16, crc' => [array_map(fn($b) => intdiv($b, 4), range(0, 15)), [Memcached::OPT_HASH => Memcached::HASH_CRC]],
        'md5 64' => [array_map(fn($b) => ($b * 7) % 4, range(0, 63)), [Memcached::OPT_HASH => Memcached::HASH_MD5]],
        // Not a power of two: libmemcached masks with count - 1 all the same.
        'three buckets' => [[3, 1, 2], []],
    ];
    foreach ($maps as $name => [$map, $opts]) {
        $p = new Memcached(); $f = new Client();
        foreach ([$p, $f] as $c) {
            foreach ($ports as $port) $c->addServer('127.0.0.1', $port);
            if ($opts) eq($c->setOptions($opts), true, "$name options");
            eq($c->setBucket($map, null, 0), true, "$name setBucket");
        }
        eq($f->getOption(Client::OPT_DISTRIBUTION), $p->getOption(Memcached::OPT_DISTRIBUTION), "$name distribution");
        $bad = 0;
        for ($k = 0; $k < 2000; $k++) {
            $a = $p->getServerByKey("vb:$k"); $b = $f->getServerByKey("vb:$k");
            if ($a['port'] !== $b['port']) $bad++;
        }
        eq($bad, 0, "$name: getServerByKey equals php-memcached on 2000 keys");
    }
    // DISTRIBUTION_VIRTUAL_BUCKET without a map: hash & (servers - 1).
    $p = new Memcached(); $f = new Client();
    foreach ([$p, $f] as $c) {
        foreach ($ports as $port) $c->addServer('127.0.0.1', $port);
        $c->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_VIRTUAL_BUCKET);
    }
    $bad = 0;
    for ($k = 0; $k < 2000; $k++) if ($p->getServerByKey("vb:$k")['port'] !== $f->getServerByKey("vb:$k")['port']) $bad++;
    eq($bad, 0, 'no map: getServerByKey equals php-memcached on 2000 keys');
});

test('buckets in $config: placement, a move, bucketFor', function () use ($mc, $mc2) {
    $cfg = fn(int $version, array $moves) => ['pools' => ['main' => ['servers' => [$mc->addr(), $mc2->addr()],
        'buckets' => ['count' => 4, 'version' => $version, 'map' => [0, 0, 1, 1], 'moves' => $moves]]]];
    $c = new Client(null, $cfg(1, []));
    $hit = [];
    for ($i = 0; count($hit) < 4 && $i < 1000; $i++) {
        $b = $c->bucketFor("bk:$i");
        eq(count($b), 1, 'one bucket-placed pool');
        $hit[$b[0]['bucket']] ??= "bk:$i";
    }
    ksort($hit);
    eq(array_keys($hit), [0, 1, 2, 3], 'keys of every bucket');
    foreach ($hit as $bucket => $k) {
        $want = $bucket < 2 ? $mc->addr() : $mc2->addr();
        eq($c->bucketFor($k)[0], ['pool' => 'main', 'bucket' => $bucket, 'version' => 1, 'server' => $want], "bucket $bucket");
        eq($c->routeFor($k), [$want], "routeFor bucket $bucket");
    }
    eq($c->reload($cfg(2, [['bucket' => 0, 'to' => 1, 'phase' => 'dual_write']])), true, 'reload with a move');
    $k = $hit[0];
    eq($c->bucketFor($k, 'set')[0], ['pool' => 'main', 'bucket' => 0, 'version' => 2, 'server' => $mc->addr(), 'phase' => 'dual_write', 'to' => $mc2->addr()], 'the move');
    eq($c->routeFor($k, 'set'), [$mc->addr(), $mc2->addr()], 'a dual write reaches both');
    eq($c->set($k, 'v'), true, 'set in dual_write');
    $raw = new Client(null, ['servers' => [$mc2->addr()]]);
    eq($raw->get($k), 'v', 'the target holds it too');
    eq(@$c->reload($cfg(1, [])), false, 'an older map is refused');
    eq($c->bucketFor($k)[0]['version'], 2, 'the map in use stays');
    eq((new Client(null, ['servers' => [$mc->addr()]]))->bucketFor('x'), [], 'no bucket-placed pool: empty');
});

test('interop with php-memcached', function () use ($mc) {
    if (!extension_loaded('memcached')) { fwrite(STDERR, "skip: php-memcached not loaded\n"); return; }
    $obj = new stdClass; $obj->x = [1, 2];
    $values = ['str' => 'héllo', 'bin' => "\0\1\2", 'long' => 123456789, 'neg' => -5, 'double' => 3.25, 'tiny' => 0.1,
               'true' => true, 'false' => false, 'arr' => ['a' => [1, 2.5, 'x']], 'obj' => $obj, 'null' => null,
               'txt4k' => str_repeat('lorem ipsum ', 400), 'txt1m' => str_repeat('0123456789abcdef', 65536),
               'arr64k' => array_fill(0, 5000, 'value')];
    $serializers = [Memcached::SERIALIZER_PHP, Memcached::SERIALIZER_JSON_ARRAY];
    if (Memcached::HAVE_IGBINARY && Fae\have_serializer('igbinary')) $serializers[] = Memcached::SERIALIZER_IGBINARY;
    if (Memcached::HAVE_MSGPACK && Fae\have_serializer('msgpack')) $serializers[] = Memcached::SERIALIZER_MSGPACK;
    foreach ([Memcached::COMPRESSION_FASTLZ, Memcached::COMPRESSION_ZLIB] as $ct) {
        foreach ($serializers as $ser) {
            $p = new Memcached(); $p->addServer('127.0.0.1', $mc->port);
            $f = new Client(); $f->addServer('127.0.0.1', $mc->port);
            foreach ([$p, $f] as $c) {
                $c->setOption(Memcached::OPT_COMPRESSION_TYPE, $ct);
                $c->setOption(Memcached::OPT_SERIALIZER, $ser);
                $c->setOption(Memcached::OPT_USER_FLAGS, 7);
            }
            foreach ($values as $k => $v) {
                if ($ser === Memcached::SERIALIZER_JSON_ARRAY && is_object($v)) continue;
                $tag = "ct$ct ser$ser $k";
                check($p->set("io:$k", $v), "php-memcached set $tag");
                $got = $f->get("io:$k", null, Client::GET_EXTENDED);
                check(is_array($got) && $got['value'] == $v && gettype($got['value']) === gettype($v), "php-memcached → fae $tag");
                check(is_array($got) && $got['flags'] === 7, "user flags php-memcached → fae $tag");
                check($f->set("io:$k", $v), "fae set $tag");
                $back = $p->get("io:$k", null, Memcached::GET_EXTENDED);
                check(is_array($back) && $back['value'] == $v && gettype($back['value']) === gettype($v), "fae → php-memcached $tag");
                check(is_array($back) && $back['flags'] === 7, "user flags fae → php-memcached $tag");
            }
            // Compressed for real, same flags word.
            $p->set('io:probe', $values['txt1m']);
            $raw = new Client(); $raw->addServer('127.0.0.1', $mc->port);
        }
    }
    // The flag bits on the wire are php-memcached's (compressed string = type 0 | 0x10 | algo).
    $p = new Memcached(); $p->addServer('127.0.0.1', $mc->port);
    $p->setOption(Memcached::OPT_COMPRESSION_TYPE, Memcached::COMPRESSION_ZLIB);
    $p->set('io:flags', str_repeat('z', 5000));
    $f = new Client(); $f->addServer('127.0.0.1', $mc->port); $f->setOption(Client::OPT_COMPRESSION_TYPE, Client::COMPRESSION_ZLIB);
    $f->set('io:flags2', str_repeat('z', 5000));
    $c = stream_socket_client('tcp://' . $mc->addr());
    fwrite($c, "mg io:flags f\r\nmg io:flags2 f\r\n");
    eq(trim(fgets($c)), 'HD f48', 'php-memcached zlib flags');
    eq(trim(fgets($c)), 'HD f48', 'fae zlib flags identical');
});

test('encrypted values interoperate with php-memcached (setEncodingKey)', function () use ($mc) {
    if (!extension_loaded('memcached')) { fwrite(STDERR, "skip: php-memcached not loaded\n"); return; }
    if (!Memcached::HAVE_ENCODING) { fwrite(STDERR, "skip: php-memcached without encoding\n"); return; }
    // 32 bytes or more: libmemcached with OpenSSL reads 32 bytes from the key's start, so a
    // shorter key takes whatever memory follows it and is not shared even between two
    // php-memcached processes.
    $key = 'enc interop: a key longer than 32 bytes';
    $raw = function (string $k) use ($mc) {
        $c = stream_socket_client('tcp://' . $mc->addr());
        fwrite($c, "mg $k v f\r\n");
        [, $n, $f] = explode(' ', trim(fgets($c)));
        $v = stream_get_contents($c, (int)$n);
        fclose($c);
        return [$v, (int)substr($f, 1)];
    };
    $values = ['str' => 'set using encoding', 'empty' => '', 'bin' => "\0\1\2\xff", 'long' => 42, 'double' => 2.5,
               'true' => true, 'arr' => ['a' => [1, 2.5, 'x']], 'big' => str_repeat('compress me ', 1000),
               'bigarr' => array_fill(0, 500, 'value')];
    foreach ([Memcached::COMPRESSION_FASTLZ, Memcached::COMPRESSION_ZLIB] as $ct) {
        foreach ([Memcached::SERIALIZER_PHP, Memcached::SERIALIZER_JSON_ARRAY] as $ser) {
            $p = new Memcached(); $p->addServer('127.0.0.1', $mc->port);
            $f = new Client(); $f->addServer('127.0.0.1', $mc->port);
            foreach ([$p, $f] as $c) {
                $c->setOption(Memcached::OPT_COMPRESSION_TYPE, $ct);
                $c->setOption(Memcached::OPT_SERIALIZER, $ser);
                eq($c->setEncodingKey($key), true, 'setEncodingKey ' . get_class($c));
            }
            foreach ($values as $k => $v) {
                $tag = "ct$ct ser$ser $k";
                check($p->set("enc:p:$k", $v), "php-memcached set $tag");
                check($f->set("enc:f:$k", $v), "fae set $tag");
                [$fb, $ff] = $raw("enc:f:$k"); [$pb, $pf] = $raw("enc:p:$k");
                eq($ff, $pf, "the same flags $tag");
                // Compressed streams differ (another compressor); the rest is byte-identical.
                if (!($pf & 0x10)) eq(bin2hex($fb), bin2hex($pb), "the same stored bytes $tag");
                eq($f->get("enc:p:$k"), $v, "php-memcached → fae $tag");
                eq($p->get("enc:f:$k"), $v, "fae → php-memcached $tag");
            }
        }
    }
    [$bytes] = $raw('enc:f:str');
    check(strlen($bytes) === 32 && !str_contains($bytes, 'encoding'), 'stored encrypted: 18 bytes pad to two blocks');
    // Another key: false and the same result code from both (libmemcached's NOTFOUND).
    $p = new Memcached(); $p->addServer('127.0.0.1', $mc->port); $p->setEncodingKey('some other key, also over 32 bytes');
    $f = new Client(); $f->addServer('127.0.0.1', $mc->port); $f->setEncodingKey('some other key, also over 32 bytes');
    eq([$p->get('enc:f:str'), $p->getResultCode()], [false, Memcached::RES_NOTFOUND], 'php-memcached, wrong key');
    eq([$f->get('enc:p:str'), $f->getResultCode()], [false, Memcached::RES_NOTFOUND], 'fae, wrong key: the same');
    eq([$p->getMulti(['enc:f:str', 'enc:f:arr']), $p->getResultCode()], [[], Memcached::RES_NOTFOUND], 'php-memcached getMulti, wrong key');
    eq([$f->getMulti(['enc:p:str', 'enc:p:arr']), $f->getResultCode()], [[], Memcached::RES_NOTFOUND], 'fae getMulti, wrong key: the same');
    // append/prepend/increment are refused while a key is set (compression off for append).
    foreach ([$p, $f] as $c) {
        $c->setOption(Memcached::OPT_COMPRESSION, false);
        $name = get_class($c);
        eq([$c->append('enc:f:str', 'x'), $c->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], "$name append refused");
        eq([$c->prepend('enc:f:str', 'x'), $c->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], "$name prepend refused");
        eq([$c->increment('enc:f:long'), $c->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], "$name increment refused");
        eq([$c->decrement('enc:f:long'), $c->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], "$name decrement refused");
    }
});

test('session handler (CLI)', function () use ($mc, $mc2) {
    $h = new Fae\SessionHandler(null, ['servers' => [$mc->addr()]], ['lock_wait_min' => 10, 'lock_wait_max' => 20, 'lock_retries' => 3]);
    check($h instanceof SessionHandlerInterface && $h instanceof SessionUpdateTimestampHandlerInterface, 'interfaces');
    eq($h->open('', 'PHPSESSID'), true, 'open');
    eq($h->read('sid1'), '', 'empty session');
    eq($h->write('sid1', 'a|i:1;'), true, 'write');
    eq($h->close(), true, 'close');
    $h2 = new Fae\SessionHandler(null, ['servers' => [$mc->addr()]], ['lock_wait_min' => 10, 'lock_wait_max' => 20, 'lock_retries' => 3]);
    $h2->open('', 'PHPSESSID');
    eq($h2->read('sid1'), 'a|i:1;', 'read back');
    // While h2 holds the lock, another handler cannot read.
    $h3 = new Fae\SessionHandler(null, ['servers' => [$mc->addr()]], ['lock_wait_min' => 10, 'lock_wait_max' => 20, 'lock_retries' => 3]);
    $h3->open('', 'PHPSESSID');
    $t = microtime(true);
    try { $h3->read('sid1'); check(false, 'locked read fails'); } catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'lock'), 'locked read fails: ' . $e->getMessage()); }
    check(microtime(true) - $t < 1.0, 'lock wait bounded');
    $h2->close();
    eq($h3->read('sid1'), 'a|i:1;', 'lock released on close');
    eq($h3->validateId('sid1'), true, 'validateId');
    eq($h3->updateTimestamp('sid1', ''), true, 'updateTimestamp');
    eq($h3->destroy('sid1'), true, 'destroy');
    eq($h3->validateId('sid1'), false, 'destroyed');
    // Save path form, as session.save_path gives it.
    $h4 = new Fae\SessionHandler();
    eq($h4->open($mc->addr() . ',' . $mc2->addr(), 'PHPSESSID'), true, 'open with save_path');
    unset($h3);
    // Freed without close (what a fatal error leaves): the lock goes with it.
    $h5 = new Fae\SessionHandler(null, ['servers' => [$mc->addr()]]); $h5->open('', 'x'); $h5->read('sid2'); unset($h5);
    $h6 = new Fae\SessionHandler(null, ['servers' => [$mc->addr()]], ['lock_retries' => 1]); $h6->open('', 'x');
    eq($h6->read('sid2'), '', 'lock released when the handler is freed');
});

test('unix socket servers', function () use ($mc, $root) {
    $sock = new Memcached_Socket_Process();
    $path = $sock->path();
    $c = new Client();
    eq($c->addServer($path, 0), true, 'addServer(path, 0)');
    eq($c->addServer('127.0.0.1', $mc->port), true, 'addServer(tcp)');
    for ($i = 0; $i < 50; $i++) eq($c->set("u:$i", "v$i"), true, "set u:$i");
    $got = $c->getMulti(array_map(fn($i) => "u:$i", range(0, 49)));
    eq(count($got), 50, 'getMulti over socket + tcp');
    $onSocket = 0;
    for ($i = 0; $i < 50; $i++) if ($c->getServerByKey("u:$i")['host'] === $path) $onSocket++;
    check($onSocket > 5 && $onSocket < 45, "keys on both servers ($onSocket on the socket)");
    eq((int)mc_stat($path, 'curr_items'), $onSocket, 'the socket server holds the keys placed on it');
    // Reported as php-memcached reports it: host = path, port 11211 (addServer's 0), SOCKET.
    $list = $c->getServerList();
    eq([$list[0]['host'], $list[0]['port'], $list[0]['type']], [$path, 11211, 'SOCKET'], 'getServerList socket entry');
    eq($list[1]['type'], 'TCP', 'getServerList tcp entry');
    eq($c->routeFor('u:1') !== [], true, 'routeFor');
    $a = new Client();
    eq($a->addServers([[$path, 0, 1], ['127.0.0.1', $mc->port]]), true, 'addServers');
    eq($a->getServerList()[0]['port'], 0, 'addServers stores port 0 for a socket (libmemcached)');
    eq($a->get('u:1') === 'v1' || $a->getResultCode() === Client::RES_NOTFOUND, true, 'addServers client reads');
    if (extension_loaded('memcached')) {
        foreach (['addServer' => fn($m) => [$m->addServer($path, 0, 2), $m->addServer('127.0.0.1', $mc->port)],
                  'addServers' => fn($m) => $m->addServers([[$path, 0, 2], ['127.0.0.1', $mc->port, 1]])] as $how => $add) {
            $p = new Memcached(); $f = new Client();
            $p->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true); $f->setOption(Client::OPT_LIBKETAMA_COMPATIBLE, true);
            $add($p); $add($f);
            eq(array_map(fn($s) => [$s['host'], $s['port'], $s['type']], $f->getServerList()),
               array_map(fn($s) => [$s['host'], $s['port'], $s['type']], $p->getServerList()), "$how: getServerList equals php-memcached's");
            $bad = 0;
            for ($k = 0; $k < 2000; $k++) {
                $x = $p->getServerByKey("key:$k"); $y = $f->getServerByKey("key:$k");
                if ([$x['host'], $x['port']] !== [$y['host'], $y['port']]) $bad++;
            }
            eq($bad, 0, "$how: getServerByKey equals php-memcached on 2000 keys");
        }
    }
    // Golden vectors made by php-memcached (tests/placement/README.md).
    $pool = [['/tmp/fae-placement/m1.sock', 0], ['127.0.0.1', 21211], ['/tmp/fae-placement/m2.sock', 0], ['127.0.0.1', 21212]];
    foreach (['php-memcached_unix.csv' => [true, [1, 1, 1, 1]], 'php-memcached_unix_w1234.csv' => [true, [1, 2, 3, 4]],
              'php-memcached-default_unix.csv' => [false, [1, 1, 1, 1]]] as $file => [$ketama, $weights]) {
        $v = new Client();
        if ($ketama) $v->setOption(Client::OPT_LIBKETAMA_COMPATIBLE, true);
        foreach ($pool as $i => [$h, $port]) $v->addServer($h, $port, $weights[$i]);
        $rows = array_map('str_getcsv', array_slice(file("$root/tests/placement/$file", FILE_IGNORE_NEW_LINES), 1));
        $bad = 0;
        foreach ($rows as [$key, $want]) {
            $g = $v->getServerByKey($key);
            if ((str_starts_with($g['host'], '/') ? $g['host'] : "{$g['host']}:{$g['port']}") !== $want) $bad++;
        }
        eq($bad, 0, "$file: " . count($rows) . ' keys');
    }
    // $config and session save paths take the path too.
    $cfg = new Client(null, ['servers' => [$path]]);
    eq($cfg->get('u:0') === false ? $cfg->set('u:0', 'x') : true, true, '$config servers: [path]');
    eq($cfg->getServerByKey('u:0')['host'], $path, '$config: getServerByKey host');
    $h = new Fae\SessionHandler();
    eq($h->open("$path:0:1", 'PHPSESSID'), true, 'session save_path with a socket');
    eq($h->read('usid'), '', 'session read');
    eq($h->write('usid', 'a|i:1;'), true, 'session write over the socket');
    eq($h->close(), true, 'session close');
    // A path nobody listens on: a clear error naming it, at once, no crash.
    $d = new Client();
    eq($d->addServer('/nonexistent-dir/m.sock', 0), true, 'addServer(missing path)');
    $t = microtime(true);
    eq($d->get('k'), false, 'get on a missing socket');
    check($d->getResultCode() !== Client::RES_SUCCESS && $d->getResultCode() !== Client::RES_NOTFOUND, 'an error code: ' . $d->getResultCode());
    check(str_contains($d->getLastErrorMessage(), '/nonexistent-dir/m.sock'), 'message names the path: ' . $d->getLastErrorMessage());
    check(microtime(true) - $t < 0.5, 'fails at once');
    $sock->stop();
    eq($c->get('u:1') === false || $c->get('u:1') === 'v1', true, 'a killed socket server is an error, not a crash');
});

test('reload', function () use ($mc, $mc2) {
    $c = new Client(null, ['servers' => [$mc->addr()]]);
    eq($c->set('r:k', 'v1'), true, 'set before reload');
    eq($c->clientStats()['process']['config_version'], 1, 'config_version before reload');
    eq($c->getServerByKey('r:k')['port'], $mc->port, 'key on the first server before');
    eq($c->reload(['servers' => [$mc2->addr()]]), true, 'reload');
    eq($c->getResultCode(), Client::RES_SUCCESS, 'reload result code');
    eq($c->getServerByKey('r:k')['port'], $mc2->port, 'key moved to the new server list');
    eq(array_column($c->getServerList(), 'port'), [$mc2->port], 'getServerList after reload');
    eq($c->get('r:k'), false, 'the new server does not have the key');
    eq($c->set('r:k', 'v2'), true, 'set after reload');
    $direct = new Client(null, ['servers' => [$mc2->addr()]]);
    eq($direct->get('r:k'), 'v2', 'stored on the new server');
    $st = $c->clientStats();
    eq($st['process']['config_version'], 2, 'config_version after reload');
    eq($st['process']['reloads'], 1, 'reloads counted');
    check(isset($st['destinations'][$mc2->addr()]), 'clientStats lists the new destination');

    // A bad config: false with a code and message; the old config keeps serving.
    eq($c->reload(['servers' => [$mc->addr()], 'nope' => 1]), false, 'bad config refused');
    eq($c->getResultCode(), Client::RES_INVALID_ARGUMENTS, 'bad config code');
    check(str_contains($c->getLastErrorMessage(), 'nope'), 'bad config message names the key: ' . $c->getLastErrorMessage());
    eq($c->reload(['servers' => []]), false, 'empty server list refused');
    eq($c->reload(['timeouts' => ['io_ms' => 'slow']]), false, 'bad field type refused');
    eq($c->get('r:k'), 'v2', 'old config still serves');
    eq($c->getServerByKey('r:k')['port'], $mc2->port, 'old server list still in force');
    eq($c->clientStats()['process']['config_version'], 2, 'config_version unchanged by refused reloads');
    try { $c->reload('servers'); check(false, 'non-array throws'); } catch (TypeError $e) { check(true, 'non-array TypeError'); }

    // Warm connections to a server that stays are kept.
    $w = new Client(null, ['servers' => [$mc->addr()]]);
    $w->set('r:warm', 1);
    eq($w->reload(['servers' => [$mc->addr(), $mc2->addr()]]), true, 'reload adding a server');
    check(($w->connectionCounts()[$mc->addr()]['open'] ?? 0) >= 1, 'connection to the kept server stays open');
    // Without servers or pools, the current list is kept and the rest replaced.
    eq($w->reload(['timeouts' => ['io_ms' => 300]]), true, 'reload without servers');
    eq(count($w->getServerList()), 2, 'server list kept');
    eq($w->getOption(Client::OPT_POLL_TIMEOUT), 300, 'new timeouts in force');
    eq($w->set('r:warm2', 2), true, 'still serving');
    eq($w->get('r:warm2'), 2, 'still serving: get');

    // Before first use there is nothing to swap: the next call builds from the new config.
    $fresh = new Client(null, ['servers' => ['127.0.0.1:1']]);
    eq($fresh->reload(['servers' => [$mc->addr()]]), true, 'reload before first use');
    eq($fresh->get('r:warm'), 1, 'serves from the reloaded config');

    // A persistent client: every Fae\Client sharing the id sees the reload.
    $p1 = new Client('reload-pool', ['servers' => [$mc->addr()]]);
    $p1->set('r:p', 1);
    $p2 = new Client('reload-pool');
    eq($p1->reload(['servers' => [$mc2->addr()]]), true, 'persistent reload');
    eq($p2->getServerByKey('r:p')['port'], $mc2->port, 'shared by clients with the same persistent id');

    // Placement options stay in force across a reload (preset-equivalent and custom ones).
    $four = ['127.0.0.1:21211', '127.0.0.1:21212', '127.0.0.1:21213', '127.0.0.1:21214'];
    $combos = [[], [Client::OPT_LIBKETAMA_COMPATIBLE => true], [Client::OPT_DISTRIBUTION => Client::DISTRIBUTION_CONSISTENT],
               [Client::OPT_HASH => Client::HASH_CRC], [Client::OPT_HASH => Client::HASH_MURMUR, Client::OPT_DISTRIBUTION => Client::DISTRIBUTION_CONSISTENT]];
    foreach ($combos as $i => $opts) {
        $r = new Client(null, ['servers' => [$mc->addr()]]);
        $r->setOptions($opts);
        $r->set('r:x', 1);
        eq($r->reload(['servers' => $four]), true, "combo $i reload");
        $want = new Client(); $want->setOptions($opts);
        foreach ($four as $s) $want->addServer('127.0.0.1', (int)substr($s, -5));
        $bad = 0;
        for ($k = 0; $k < 500; $k++) {
            if ($r->getServerByKey("key:$k")['port'] !== $want->getServerByKey("key:$k")['port']) $bad++;
        }
        eq($bad, 0, "combo $i: placement after reload equals a fresh client's");
    }
    $pools = new Client(null, ['servers' => [$mc->addr()]]);
    eq($pools->reload(['pools' => ['main' => ['servers' => [$mc2->addr()], 'mode' => 'jump']], 'route' => 'main']), true, 'reload to a pools config');
    eq($pools->getServerByKey('anything')['port'], $mc2->port, 'pools config in force');
});

test('discovery.file in $config: the supervisor follows the topology snapshot', function () use ($mc, $mc2) {
    $f = tempnam(sys_get_temp_dir(), 'fae-topo-');
    file_put_contents($f, json_encode(['pools' => ['default' => [$mc->addr()]]]));
    $c = new Client(null, ['servers' => [$mc->addr()], 'discovery' => ['file' => $f], 'reload' => ['watch_ms' => 50]]);
    eq($c->set('d:k', 1), true, 'set');
    file_put_contents("$f.tmp", json_encode(['pools' => ['default' => [$mc2->addr()]]]));
    rename("$f.tmp", $f);
    $deadline = microtime(true) + 5;
    while (microtime(true) < $deadline && $c->getServerByKey('d:k')['port'] !== $mc2->port) usleep(50000);
    eq($c->getServerByKey('d:k')['port'], $mc2->port, 'new topology applied');
    eq($c->clientStats()['process']['config_version'], 2, 'applied as a reload');
    @unlink($f);
});

test('core log records reach the PHP error log', function () {
    $log = tempnam(sys_get_temp_dir(), 'fae-log-');
    ini_set('error_log', $log);
    eq(ini_set('fae.log_level', 'info'), 'warn', 'fae.log_level defaults to warn');
    eq(ini_set('fae.log_level', 'loud'), false, 'unknown level refused');
    eq(ini_get('fae.log_level'), 'info', 'level kept');
    $a = new Memcached_Process(); $b = new Memcached_Process();
    $cfg = ['servers' => [$a->addr(), $b->addr()], 'timeouts' => ['connect_ms' => 100, 'io_ms' => 200],
            'health' => ['max_tko_fraction' => 1.0]];
    $c = new Client(null, $cfg);
    $keyOnB = null;
    for ($k = 0; $keyOnB === null; $k++) {
        if ($c->getServerByKey("lk:$k")['port'] === $b->port) $keyOnB = "lk:$k";
    }
    eq($c->set($keyOnB, 1), true, 'set on the second server');
    eq($c->reload($cfg), true, 'reload');
    $b->stop();
    $want = 'destination=' . $b->addr() . ' breaker=open';
    $deadline = microtime(true) + 10;
    $text = '';
    while (microtime(true) < $deadline) {
        $c->get($keyOnB);
        $text = (string)file_get_contents($log);
        if (str_contains($text, $want)) break;
        usleep(50000);
    }
    check(str_contains($text, "fae: level=warn $want"), "error_log has '$want': " . var_export($text, true));
    check(str_contains($text, 'fae: level=info reload=ok config_version=2'), 'info records at fae.log_level=info');
    ini_set('fae.log_level', 'warn');
    eq($c->reload($cfg), true, 'reload at warn');
    $c->get($keyOnB);
    $text = (string)file_get_contents($log);
    check(!str_contains($text, 'config_version=3'), 'no info records at fae.log_level=warn');
    eq($c->reload(['servers' => []]), false, 'bad reload');
    ini_restore('error_log');
    ini_restore('fae.log_level');
    $a->stop();
    @unlink($log);
});

test('routes: failover to a gutter, against a killed server', function () use ($mc2) {
    $main = new Memcached_Process();
    $gutter = $mc2->addr();
    $c = new Client(null, [
        'pools' => ['main' => ['servers' => [$main->addr()]], 'gutter' => ['servers' => [$gutter]]],
        'route' => ['type' => 'failover', 'children' => ['main', ['type' => 'gutter', 'pool' => 'gutter', 'max_ttl' => 10]]],
        'timeouts' => ['connect_ms' => 200, 'io_ms' => 1000],
    ]);
    eq($c->routeFor('fo:k', 'set'), [$main->addr(), $gutter], 'routeFor set lists every child of the failover');
    eq($c->routeFor('fo:k'), [$main->addr(), $gutter], 'routeFor get too');
    eq(count($c->getServerList()), 2, 'getServerList: both pools');
    $onMain = new Client(null, ['servers' => [$main->addr()]]);
    $onGutter = new Client(null, ['servers' => [$gutter]]);
    eq($c->set('fo:k', 'on main', 3600), true, 'set on main');
    eq($onMain->get('fo:k'), 'on main', 'stored on main');
    eq($onGutter->get('fo:k'), false, 'not in the gutter');
    $main->stop();
    eq($c->set('fo:k', 'in the gutter', 3600), true, 'set fails over');
    eq($onGutter->get('fo:k'), 'in the gutter', 'stored in the gutter');
    $ttl = (int)substr(mc_command($gutter, "mg fo:k t\r\n"), 4);
    check($ttl > 0 && $ttl <= 10, "gutter TTL capped at max_ttl ($ttl)");
    eq($c->get('fo:k'), 'in the gutter', 'get fails over');
    eq($c->get('fo:none'), false, 'a gutter miss is a miss');
    eq($c->getResultCode(), Client::RES_NOTFOUND, 'miss code');
    eq($c->increment('fo:n', 1, 10), 10, 'increment with initial value through the failover');
    eq($c->delete('fo:k'), true, 'delete fails over');
    $st = $c->clientStats()['routes'];
    eq($st['route']['type'], 'failover', 'clientStats routes: root');
    check($st['route']['failovers'] >= 4, 'failovers counted: ' . $st['route']['failovers']);
    eq($st['route.children[1]']['type'], 'gutter', 'clientStats routes: the gutter');
    check($st['route.children[1]']['ttl_capped'] >= 1, 'ttl_capped counted');
});

test('routes: replicated, prefix and shadow from an array', function () use ($mc, $mc2) {
    $a = $mc->addr(); $b = $mc2->addr();
    $c = new Client(null, [
        'pools' => ['a' => ['servers' => [$a]], 'b' => ['servers' => [$b]]],
        'route' => ['type' => 'prefix', 'default' => 'a', 'routes' => [
            'both:' => ['type' => 'replicated', 'children' => ['a', 'b'], 'write' => 'all_majority'],
            'shadow:' => ['type' => 'shadow', 'route' => 'a', 'shadow' => 'b', 'fraction' => 1.0],
        ]],
    ]);
    eq($c->routeFor('plain'), [$a], 'prefix default');
    eq($c->routeFor('both:1', 'set'), [$a, $b], 'replicated: every replica');
    eq($c->routeFor('shadow:1', 'set'), [$a, $b], 'shadow: the route and the shadow');
    $onA = new Client(null, ['servers' => [$a]]);
    $onB = new Client(null, ['servers' => [$b]]);
    eq($c->set('both:1', ['x' => 1]), true, 'replicated set');
    eq([$onA->get('both:1'), $onB->get('both:1')], [['x' => 1], ['x' => 1]], 'on both replicas');
    eq($c->set('shadow:1', 'mirrored'), true, 'shadowed set');
    eq($onA->get('shadow:1'), 'mirrored', 'answered by the route');
    for ($i = 0; $i < 200 && $onB->get('shadow:1') === false; $i++) usleep(10000);
    eq($onB->get('shadow:1'), 'mirrored', 'mirrored to the shadow');
    eq($c->getMulti(['both:1', 'plain', 'shadow:1']), ['both:1' => ['x' => 1], 'shadow:1' => 'mirrored'], 'getMulti across routes');
    $st = $c->clientStats()['routes'];
    eq($st['route.routes.both:']['type'], 'replicated', 'routes: the replicated route by its path');
    eq($st['route.routes.shadow:']['type'], 'shadow', 'routes: the shadow route by its path');
    check($st['route.routes.shadow:']['shadowed'] >= 1, 'shadowed counted');
});

test('routes: local near cache with ttl_ms', function () use ($mc) {
    $main = $mc->addr();
    $c = new Client(null, [
        'pools' => ['main' => ['servers' => [$main]]],
        'route' => ['type' => 'local', 'ttl_ms' => 300, 'max_items' => 100, 'route' => 'main'],
    ]);
    $other = new Client(null, ['servers' => [$main]]);
    eq($c->routeFor('near:1'), ['local', $main], 'routeFor: the local cache, then the server');
    eq($c->getServerByKey('near:1')['port'], $mc->port, 'getServerByKey: the server, not the local cache');
    eq($c->set('near:1', 'v1'), true, 'set');
    eq($other->get('near:1'), 'v1', 'written through to memcached');
    eq($c->get('near:1'), 'v1', 'get fills the near cache');
    eq($other->set('near:1', 'v2'), true, 'another writer');
    eq($c->get('near:1'), 'v1', 'near-cache hit: stale up to ttl_ms');
    usleep(400000);
    eq($c->get('near:1'), 'v2', 'after ttl_ms the server is asked again');
    eq($c->set('near:1', 'v3'), true, 'own write');
    eq($c->get('near:1'), 'v3', 'reads its own writes');
    eq($c->delete('near:1'), true, 'delete');
    eq($other->get('near:1'), false, 'deleted on memcached');
    $st = $c->clientStats()['routes']['route'];
    eq($st['type'], 'local', 'routes: local');
    check($st['local_hits'] >= 1 && $st['local_misses'] >= 1, 'local hits and misses counted');
});

test('routes: embedded in-process cache', function () {
    $c = new Client(null, ['route' => ['type' => 'local', 'max_items' => 1000]]);
    eq($c->getServerList(), [], 'no servers');
    eq($c->routeFor('k', 'set'), ['local'], 'routeFor: local');
    eq($c->getServerByKey('k'), false, 'getServerByKey: no server');
    eq($c->getResultCode(), Client::RES_NO_SERVERS, 'getServerByKey: RES_NO_SERVERS');
    eq($c->get('k'), false, 'miss');
    eq($c->getResultCode(), Client::RES_NOTFOUND, 'miss code');
    eq($c->set('k', ['any' => 'value']), true, 'set');
    eq($c->get('k'), ['any' => 'value'], 'get');
    eq($c->add('k', 1), false, 'add existing');
    eq($c->replace('none', 1), false, 'replace missing');
    $x = $c->get('k', null, Client::GET_EXTENDED);
    check(is_array($x) && $x['cas'] > 0, 'GET_EXTENDED has a cas');
    eq($c->cas($x['cas'], 'k', 'swapped'), true, 'cas');
    eq($c->cas($x['cas'], 'k', 'stale'), false, 'stale cas');
    eq($c->getResultCode(), Client::RES_DATA_EXISTS, 'stale cas code');
    eq($c->touch('k', 100), true, 'touch');
    eq($c->touch('none', 100), false, 'touch missing');
    eq($c->increment('n'), false, 'increment missing');
    eq($c->increment('n', 5, 10), 10, 'increment with initial value');
    eq($c->increment('n', 5), 15, 'increment');
    eq($c->decrement('n', 100), 0, 'decrement floors at 0');
    eq($c->delete('k'), true, 'delete');
    eq($c->delete('k'), false, 'delete missing');
    eq($c->setMulti(['a' => 1, 'b' => 2]), true, 'setMulti');
    eq($c->getMulti(['a', 'none', 'b']), ['a' => 1, 'b' => 2], 'getMulti');
    eq($c->flush(), true, 'flush');
    eq($c->get('a'), false, 'flushed');
    $st = $c->clientStats();
    eq($st['destinations'], [], 'no destinations');
    eq($st['routes']['route']['type'], 'local', 'routes: local');
    eq((new Client(null, ['route' => ['type' => 'local']]))->get('n'), false, 'one cache per client');
    // php-memcached's rule stays: no servers and no route of its own wait for addServer().
    $e = new Client(null, []);
    eq($e->get('x'), false, 'empty config: no servers');
    eq($e->getResultCode(), Client::RES_NO_SERVERS, 'empty config: RES_NO_SERVERS');
    $d = new Client(null, ['route' => ['type' => 'local', 'ttl_ms' => 100, 'route' => 'default']]);
    eq($d->get('x'), false, 'a route that names a pool needs servers');
    eq($d->getResultCode(), Client::RES_NO_SERVERS, 'RES_NO_SERVERS until addServer()');
});

test('routes: bad trees throw, reload into a tree', function () use ($mc, $mc2) {
    try {
        new Client(null, ['pools' => ['a' => ['servers' => [$mc->addr()]]],
                          'route' => ['type' => 'failover', 'children' => ['a', ['type' => 'pool', 'pool' => 'nope']]]]);
        check(false, 'unknown pool throws');
    } catch (Fae\Exception $e) {
        check(str_contains($e->getMessage(), 'route.children[1].pool: unknown pool "nope"'), 'error names the path: ' . $e->getMessage());
    }
    $c = new Client(null, ['servers' => [$mc->addr()]]);
    eq($c->routeFor('rk', 'set'), [$mc->addr()], 'before reload');
    eq($c->reload(['pools' => ['main' => ['servers' => [$mc->addr()]], 'gutter' => ['servers' => [$mc2->addr()]]],
                   'route' => ['type' => 'gutter', 'pool' => 'gutter', 'max_ttl' => 5, 'route' => 'main']]), true, 'reload into a tree');
    eq($c->routeFor('rk', 'set'), [$mc->addr(), $mc2->addr()], 'after reload: main and gutter');
    eq($c->set('rk', 'v'), true, 'set after reload');
    check(isset($c->clientStats()['routes']['route']), 'routes after reload');
});

// ---- Stampede protection: leases, getOrSet, read-through callbacks (core get_or_set) ----

test('stampede: lease flow', function () use ($mc) {
    $cfg = ['servers' => [$mc->addr()], 'stampede' => ['lease_ttl_s' => 10, 'wait_ms' => 500]];
    $a = new Client(null, $cfg);
    $b = new Client(null, $cfg);
    $k = 'lf:' . uniqid();
    $l = $a->getOrLease($k);
    eq($l['status'], 'miss', 'first reader: miss');
    check(is_int($l['token']) && $l['token'] > 0, 'miss carries a token');
    eq($l['value'], null, 'miss has no value');
    eq(array_keys($l), ['status', 'value', 'token'], 'getOrLease array shape');
    eq($b->getOrLease($k), ['status' => 'wait', 'value' => null, 'token' => null], 'second reader: wait');
    eq($a->getOrLease($k)['status'], 'wait', 'the lease holder asking again: wait');
    eq($b->get($k), false, 'plain get does not see the stub');
    eq($b->getResultCode(), Client::RES_NOTFOUND, 'stub: RES_NOTFOUND');
    eq($b->getMulti([$k]), [], 'getMulti does not see the stub');
    eq($a->setWithLease($k, ['v' => 1], $l['token'], 60), true, 'setWithLease with the token');
    eq($a->getResultCode(), Client::RES_SUCCESS, 'setWithLease code');
    eq($b->getOrLease($k), ['status' => 'hit', 'value' => ['v' => 1], 'token' => null], 'then a hit');
    eq($b->get($k), ['v' => 1], 'plain get sees the value');
    $ttl = (int)substr(mc_command($mc->addr(), "mg $k t\r\n"), 4);
    check($ttl > 0 && $ttl <= 60, "setWithLease expiration applied ($ttl)");

    // A delete between the lease and the fill: the late fill loses.
    $k2 = 'lf2:' . uniqid();
    $l2 = $a->getOrLease($k2);
    eq($l2['status'], 'miss', 'k2 miss');
    $b->delete($k2);
    eq($a->setWithLease($k2, 'late', $l2['token']), false, 'fill after a delete: false');
    eq($a->getResultCode(), Client::RES_NOTSTORED, 'lost lease: RES_NOTSTORED');
    check(str_contains($a->getLastErrorMessage(), 'lease was lost'), 'lost lease message: ' . $a->getLastErrorMessage());
    eq($b->get($k2), false, 'nothing stored after the delete');
    // A set between the lease and the fill: the newer set wins.
    $l2 = $a->getOrLease($k2);
    $b->set($k2, 'newer');
    eq($a->setWithLease($k2, 'older', $l2['token']), false, 'fill after a set: false');
    eq($b->get($k2), 'newer', 'the newer set stays');

    // invalidate: one lease reader refreshes with the old value, the others get it stale.
    $k3 = 'lf3:' . uniqid();
    eq($a->set($k3, 'old', 300), true, 'set k3');
    eq($a->invalidate($k3, 30), true, 'invalidate');
    eq($a->getResultCode(), Client::RES_SUCCESS, 'invalidate code');
    $r = $a->getOrLease($k3);
    eq([$r['status'], $r['value']], ['refresh', 'old'], 'first lease reader: refresh with the old value');
    check(is_int($r['token']) && $r['token'] > 0, 'refresh carries a token');
    eq($b->getOrLease($k3), ['status' => 'stale', 'value' => 'old', 'token' => null], 'next lease reader: stale');
    eq($b->get($k3), false, 'plain get: an invalidated key is a miss');
    eq($b->getResultCode(), Client::RES_NOTFOUND, 'invalidated: RES_NOTFOUND');
    eq($a->setWithLease($k3, 'new', $r['token'], 300), true, 'refresh fill');
    eq($b->getOrLease($k3)['status'], 'hit', 'hit after the refresh');
    eq($b->get($k3), 'new', 'plain get sees the refreshed value');
    // An invalidate also fails an outstanding fill.
    $k4 = 'lf4:' . uniqid();
    $l4 = $a->getOrLease($k4);
    eq($b->invalidate($k4), true, 'invalidate the stub');
    eq($a->setWithLease($k4, 'x', $l4['token']), false, 'fill after invalidate: false');
    eq($a->invalidate('lf:absent:' . uniqid()), false, 'invalidate a missing key');
    eq($a->getResultCode(), Client::RES_NOTFOUND, 'invalidate missing: RES_NOTFOUND');
    // Token 0 ("no lease could be had") fills with add: it never overwrites.
    $k5 = 'lf5:' . uniqid();
    eq($a->setWithLease($k5, 'first', 0), true, 'token 0 on an absent key: stored');
    eq($a->setWithLease($k5, 'second', 0), false, 'token 0 on a present key: not stored');
    eq($a->get($k5), 'first', 'token 0 is an add');
    try { $a->setWithLease($k5, 'x', -1); check(false, 'negative token throws'); } catch (ValueError $e) { check(true, 'negative token: ValueError'); }
    try { $a->invalidate($k5, -1); check(false, 'negative stale_ttl throws'); } catch (ValueError $e) { check(true, 'negative stale_ttl: ValueError'); }
    eq($a->getOrLease('bad key'), false, 'bad key: false');
    eq($a->getResultCode(), Client::RES_BAD_KEY_PROVIDED, 'bad key code');
    $st = $a->clientStats()['stampede'];
    foreach (['lease_hits', 'lease_misses', 'lease_waits', 'lease_stale', 'lease_refreshes', 'computes', 'fills_stored',
              'fills_lost', 'wait_timeouts', 'lease_errors', 'coalesced_gets', 'coalesced_fills'] as $name) {
        check(isset($st[$name]) && is_int($st[$name]), "clientStats stampede.$name");
    }
    check($st['lease_misses'] >= 4 && $st['lease_waits'] >= 1 && $st['lease_refreshes'] >= 1, 'lease outcomes counted');
});

test('stampede: getOrSet', function () use ($mc) {
    $c = new Client(null, ['servers' => [$mc->addr()], 'stampede' => ['lease_ttl_s' => 10, 'wait_ms' => 500]]);
    $k = 'gos:' . uniqid();
    $calls = 0; $seen = null;
    $f = function ($key) use (&$calls, &$seen) { $calls++; $seen = $key; return ['n' => 42]; };
    eq($c->getOrSet($k, $f, 60), ['n' => 42], 'computed');
    eq($c->getResultCode(), Client::RES_SUCCESS, 'computed: RES_SUCCESS');
    eq([$calls, $seen], [1, $k], 'called once, with $key');
    eq($c->getOrSet($k, $f, 60), ['n' => 42], 'then a hit');
    eq($calls, 1, 'not called on a hit');
    eq($c->get($k), ['n' => 42], 'stored for plain get');
    $ttl = (int)substr(mc_command($mc->addr(), "mg $k t\r\n"), 4);
    check($ttl > 0 && $ttl <= 60, "expiration applied ($ttl)");

    // Every type round trips (computed, then from the cache), encoded like set().
    $obj = new stdClass; $obj->a = [1, 'b'];
    $cases = ['s' => 'hello', 'empty' => '', 'bin' => "\x00\xff\r\n", 'i' => 42, 'neg' => -7, 'max' => PHP_INT_MAX,
              'd' => 1.5, 'inf' => INF, 'nan' => NAN, 't' => true, 'f' => false, 'arr' => [1, 'two' => [3]],
              'null' => null, 'obj' => $obj, 'big' => str_repeat('compressible ', 1000)];
    foreach ($cases as $name => $v) {
        $key = "gos:t:$name:" . uniqid();
        $same = fn($got) => is_object($v) ? $got == $v : ($got === $v || (is_float($v) && is_nan($v) && is_float($got) && is_nan($got)));
        check($same($c->getOrSet($key, fn() => $v)), "getOrSet computes $name");
        check($same($c->getOrSet($key, function () { throw new LogicException('must not run'); })), "getOrSet hits $name");
        check($same($c->get($key)), "get reads $name");
    }
    $plain = new Client(null, ['servers' => [$mc->addr()]]);
    $plain->setOption(Client::OPT_COMPRESSION, false);
    $raw = $plain->get("gos:t:big:" . uniqid()); // (absent: only checks the option is per client)
    eq($raw, false, 'absent key');

    // An exception from $compute reaches the caller unchanged; nothing is stored.
    $ke = 'gos:ex:' . uniqid();
    $thrown = new DomainException('db down', 7);
    try { $c->getOrSet($ke, function () use ($thrown) { throw $thrown; }); check(false, 'exception propagates'); }
    catch (DomainException $e) { check($e === $thrown, 'the same exception object'); }
    eq($c->getResultCode(), Client::RES_FAILURE, 'after a throw: RES_FAILURE');
    eq($c->get($ke), false, 'nothing stored after a throw');
    try { $c->getOrSet($ke, fn() => undefined_function_xyz()); check(false, 'Error propagates'); }
    catch (Error $e) { check(str_contains($e->getMessage(), 'undefined_function_xyz'), 'an Error propagates too'); }
    // The failed computes left their lease stub (core: it lives lease_ttl_s): the next call
    // waits at most wait_ms, computes, and returns the value.
    $t = microtime(true);
    eq($c->getOrSet($ke, fn() => 'recovered'), 'recovered', 'a later getOrSet after a throw');
    check(microtime(true) - $t < 1.5, 'bounded by wait_ms');

    // Arguments and errors.
    try { $c->getOrSet('gos:x', 'no_such_function'); check(false, 'non-callable throws'); } catch (TypeError $e) { check(true, 'non-callable: TypeError'); }
    $calls = 0;
    eq($c->getOrSet('bad key', $f), false, 'bad key: false');
    eq([$c->getResultCode(), $calls], [Client::RES_BAD_KEY_PROVIDED, 0], 'bad key: code, not computed');
    // A value that cannot be encoded: false with the payload code.
    $c->setOption(Client::OPT_ITEM_SIZE_LIMIT, 10);
    eq($c->getOrSet('gos:big:' . uniqid(), fn() => str_repeat('x', 100)), false, 'over OPT_ITEM_SIZE_LIMIT: false');
    eq($c->getResultCode(), Client::RES_E2BIG, 'encode failure code');
    $c->setOption(Client::OPT_ITEM_SIZE_LIMIT, 0);

    // The cache being down does not fail it: computed, returned, not stored.
    $dead = new Client(null, ['servers' => ['127.0.0.1:' . free_port()], 'timeouts' => ['connect_ms' => 100, 'io_ms' => 200]]);
    eq($dead->getOrSet('gos:dead', fn() => 'from the source'), 'from the source', 'dead server: computed anyway');
    check($dead->clientStats()['stampede']['lease_errors'] >= 1, 'lease_errors counted');

    // Re-entrant: the compute can use the same client.
    $kr = 'gos:re:' . uniqid();
    eq($c->getOrSet($kr, function ($key) use ($c) { $c->set("$key:side", 'side'); return $c->get("$key:side") . '!'; }), 'side!', 'compute using the same client');
    eq($c->get("$kr:side"), 'side', 'its own write landed');

    $st = $c->clientStats()['stampede'];
    check($st['computes'] >= 20 && $st['fills_stored'] >= 15, "computes {$st['computes']}, fills_stored {$st['fills_stored']}");
});

test('stampede: config keys and placement', function () use ($mc, $mc2) {
    try { new Client(null, ['servers' => [$mc->addr()], 'stampede' => ['lease_ttl_s' => 0]]); check(false, 'bad stampede config throws'); }
    catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'stampede.lease_ttl_s'), 'error names stampede.lease_ttl_s: ' . $e->getMessage()); }
    try { new Client(null, ['servers' => [$mc->addr()], 'stampede' => ['nope' => 1]]); check(false, 'unknown stampede key throws'); }
    catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'nope'), 'unknown stampede key named'); }
    $c = new Client(null, ['servers' => [$mc->addr()], 'stampede' => ['coalesce' => false, 'wait_ms' => 100]]);
    eq($c->reload(['stampede' => ['lease_ttl_s' => 3, 'wait_ms' => 100, 'recache_below_s' => 0, 'coalesce' => true]]), true, 'reload with a stampede section');
    $k = 'cfg:' . uniqid();
    eq($c->getOrLease($k)['status'], 'miss', 'lease after reload');
    $ttl = (int)substr(mc_command($mc->addr(), "mg $k t\r\n"), 4);
    check($ttl > 0 && $ttl <= 3, "the stub lives lease_ttl_s = 3 ($ttl)");

    // A prefix on one server: the stored key carries it, $compute gets the caller's key.
    $p = new Client(null, ['servers' => [$mc->addr()]]);
    $p->setOption(Client::OPT_PREFIX_KEY, 'app:');
    $seen = null;
    eq($p->getOrSet('pk', function ($key) use (&$seen) { $seen = $key; return 'pv'; }), 'pv', 'prefixed getOrSet');
    eq($seen, 'pk', '$compute gets the unprefixed key');
    eq((new Client(null, ['servers' => [$mc->addr()]]))->get('app:pk'), 'pv', 'stored under the prefixed key');
    eq($p->invalidate('pk'), true, 'prefixed invalidate');
    eq($p->getOrLease('pk')['status'], 'refresh', 'prefixed lease read');

    // A prefix that is not hashed, on two servers: a lease on the prefixed key would guard
    // another server than get/set use, so the stampede methods refuse such keys.
    $two = ['servers' => [$mc->addr(), $mc2->addr()]];
    $q = new Client(null, $two); $q->setOption(Client::OPT_PREFIX_KEY, 'ns:');
    $plain = new Client(null, $two);
    $moved = null; $same = null;
    for ($i = 0; ($moved === null || $same === null) && $i < 1000; $i++) {
        $d = $q->getServerByKey("k$i")['port'] !== $plain->getServerByKey("ns:k$i")['port'];
        if ($d) $moved ??= "k$i"; else $same ??= "k$i";
    }
    try { $q->getOrSet($moved, fn() => 1); check(false, 'placement mismatch throws'); }
    catch (Fae\Exception $e) {
        check(str_contains($e->getMessage(), 'OPT_HASH_WITH_PREFIX_KEY'), 'the message says what to do: ' . $e->getMessage());
        eq($e->getCode(), Client::RES_NOT_SUPPORTED, 'exception code RES_NOT_SUPPORTED');
    }
    eq($q->getResultCode(), Client::RES_NOT_SUPPORTED, 'result code RES_NOT_SUPPORTED');
    eq($q->getOrSet($same, fn() => 'same server'), 'same server', 'a key both place on the same server works');
    // The read-through callback still works there: php-memcached's own get, callback, set.
    eq($q->get($moved, function ($m, $key, &$v) { $v = "rt:$key"; return true; }), "rt:$moved", 'read-through on a mismatched key');
    eq($q->get($moved), "rt:$moved", 'stored where get looks');
    eq($q->get($moved, function () { throw new LogicException('must not run'); }), "rt:$moved", 'then a hit');
    $q->setOption(Client::OPT_HASH_WITH_PREFIX_KEY, true);
    eq($q->getOrSet($moved, fn() => 'hashed'), 'hashed', 'OPT_HASH_WITH_PREFIX_KEY: protected');
});

test('stampede: read-through cache callback', function () use ($mc, $mc2) {
    $c = new Client(null, ['servers' => [$mc->addr()], 'stampede' => ['lease_ttl_s' => 10, 'wait_ms' => 2000]]);
    $k = 'rt:' . uniqid();
    $args = null;
    $v = $c->get($k, function ($memc, $key, &$value, &$expiration) use (&$args) {
        $args = [$memc, $key, $value, $expiration];
        $value = ['hello' => 'world']; $expiration = 30;
        return true;
    });
    eq($v, ['hello' => 'world'], 'callback true: its $value is returned');
    eq($c->getResultCode(), Client::RES_SUCCESS, 'callback true: RES_SUCCESS');
    check($args[0] === $c, '$memc is the client itself');
    eq(array_slice($args, 1), [$k, null, null], '$key, and $value/$expiration start null');
    eq($c->get($k), ['hello' => 'world'], 'callback true: stored');
    $ttl = (int)substr(mc_command($mc->addr(), "mg $k t\r\n"), 4);
    check($ttl > 0 && $ttl <= 30, "the callback's \$expiration applied ($ttl)");
    eq($c->get($k, function () { throw new LogicException('must not run'); }), ['hello' => 'world'], 'a hit does not call it');

    $k2 = 'rt2:' . uniqid();
    $n = 0;
    $no = function ($memc, $key, &$value) use (&$n) { $n++; $value = 'ignored'; return false; };
    eq($c->get($k2, $no), false, 'callback false: get returns false');
    eq($c->getResultCode(), Client::RES_NOTFOUND, 'callback false: RES_NOTFOUND');
    eq($c->get($k2), false, 'callback false: nothing stored');
    $t = microtime(true);
    eq($c->get($k2, $no), false, 'callback false again');
    eq($n, 2, 'a declined key calls the callback on the next miss');
    check(microtime(true) - $t < 0.5, 'and does not wait for a lease nobody fills (' . round(microtime(true) - $t, 3) . ' s)');
    eq($c->get($k2, fn($m, $key, &$value) => 0), false, 'a falsy return declines too');

    $k3 = 'rt3:' . uniqid();
    $thrown = new RuntimeException('cb');
    try { $c->get($k3, function () use ($thrown) { throw $thrown; }); check(false, 'callback exception propagates'); }
    catch (RuntimeException $e) { check($e === $thrown, 'the same exception object'); }
    eq($c->getResultCode(), Client::RES_NOTFOUND, 'after a throw: RES_NOTFOUND, as php-memcached');
    eq($c->get($k3), false, 'nothing stored after a throw');

    // GET_EXTENDED: ($memc, $key, &$value), $value = ['value' => …].
    $k4 = 'rt4:' . uniqid();
    $x = $c->get($k4, function ($memc, $key, &$value) { $value = ['value' => 'ext']; return true; }, Client::GET_EXTENDED);
    check(is_array($x) && $x['value'] === 'ext' && array_key_exists('cas', $x) && $x['flags'] === 0, 'GET_EXTENDED callback result: ' . json_encode($x));
    eq($c->get($k4), 'ext', 'GET_EXTENDED: $value["value"] stored');
    eq($c->get('rt5:' . uniqid(), function ($m, $key, &$value) { $value = 'not an array'; return true; }, Client::GET_EXTENDED), false, 'GET_EXTENDED without ["value"]: false');

    // The callback can use $memc (re-entrant).
    $k6 = 'rt6:' . uniqid();
    eq($c->get($k6, function ($m, $key, &$value) { $m->set("$key:side", 1); $value = $m->get("$key:side") + 1; return true; }), 2, 'callback using $memc');
    eq($c->get($k6), 2, 'stored');

    // getByKey: stored on the server key's server.
    $two = new Client(null, ['servers' => [$mc->addr(), $mc2->addr()]]);
    $k7 = 'rt7:' . uniqid();
    eq($two->getByKey('group', $k7, function ($m, $key, &$value) { $value = 'by key'; return true; }), 'by key', 'getByKey with a callback');
    eq($two->getByKey('group', $k7), 'by key', 'getByKey reads it back');
    $port = $two->getServerByKey('group')['port'];
    eq((new Client(null, ['servers' => ["127.0.0.1:$port"]]))->get($k7), 'by key', "stored on the server key's server");

    try { $c->get('rt:x', 'no_such_function'); check(false, 'non-callable throws'); } catch (TypeError $e) { check(true, 'non-callable: TypeError'); }
    eq($c->get('rt:none:' . uniqid(), null), false, 'null callback: plain get');

    // Same answers as php-memcached itself.
    if (extension_loaded('memcached')) {
        $p = new Memcached(); $p->addServer('127.0.0.1', $mc->port);
        foreach ([true, false] as $ret) {
            $cb = function ($memc, $key, &$value, &$expiration) use ($ret) { $value = "v:$key"; $expiration = 20; return $ret; };
            $kp = 'rtp:' . uniqid(); $kf = 'rtf:' . uniqid();
            $want = [$p->get($kp, $cb), $p->getResultCode(), $p->get($kp)];
            $got = [$c->get($kf, $cb), $c->getResultCode(), $c->get($kf)];
            $want[0] = is_string($want[0]) ? str_replace($kp, 'K', $want[0]) : $want[0];
            $want[2] = is_string($want[2]) ? str_replace($kp, 'K', $want[2]) : $want[2];
            $got[0] = is_string($got[0]) ? str_replace($kf, 'K', $got[0]) : $got[0];
            $got[2] = is_string($got[2]) ? str_replace($kf, 'K', $got[2]) : $got[2];
            eq($got, $want, 'callback returning ' . var_export($ret, true) . ': same as php-memcached');
        }
    }
});

test('stampede: 8 processes, one compute', function () use ($mc, $m) {
    if (!function_exists('pcntl_fork')) { check(false, 'pcntl_fork is needed for the multi-process test'); return; }
    foreach (['getOrSet', 'read-through'] as $how) {
        $key = 'storm:' . uniqid();
        eq($m->set("$key:computes", 0), true, "$how: counter");
        $json = run_php(__DIR__ . '/stampede_fork.php', ['storm', $mc->addr(), $how, $key, '8'], 30.0);
        $out = json_decode((string)$json, true);
        check(is_array($out), "$how: the forking process finished");
        $done = array_filter((array)$out);
        eq(count($done), 8, "$how: all 8 processes answered");
        $computes = (int)$m->get("$key:computes");
        $errors = array_sum(array_map(fn($r) => $r['stats']['lease_errors'], $done));
        eq($computes, 1, "$how: exactly one compute across 8 processes ($errors lease errors)");
        eq(count(array_unique(array_map(fn($r) => json_encode($r['v']), $done))), 1, "$how: all 8 got the same value");
        $first = $done ? reset($done)['v'] : null;
        check(is_array($first) && isset($first['by']), "$how: the computed value");
        eq($m->get($key), $first, "$how: and it is stored");
        eq(array_sum(array_map(fn($r) => $r['stats']['computes'], $done)), 1, "$how: stampede.computes sums to 1");
        $waits = array_sum(array_map(fn($r) => $r['stats']['lease_waits'], $done));
        $slowest = $done ? max(array_map(fn($r) => $r['ms'], $done)) : 0;
        check($slowest < 2000, "$how: slowest process " . round($slowest) . ' ms');
        fwrite(STDERR, sprintf("stampede %s: 8 processes, %d compute, %d lease-wait polls, slowest %.1f ms\n", $how, $computes, $waits, $slowest));
    }
});

test('stampede: a fatal error in $compute releases the key in-process', function () {
    if (!function_exists('pcntl_fork')) { check(false, 'pcntl_fork is needed'); return; }
    $json = run_php(__DIR__ . '/stampede_fork.php', ['fatal', 'fatal:' . uniqid()], 30.0);
    $out = json_decode((string)$json, true);
    check(is_array($out[0] ?? null), 'the child reported from its shutdown function');
    eq($out[0]['v'] ?? null, 'after the fatal error', 'getOrSet works after the fatal error');
    check(($out[0]['ms'] ?? 1e9) < 500, 'without waiting for the dead flight (' . round($out[0]['ms'] ?? -1, 1) . ' ms)');
    eq($out[0]['stats']['computes'] ?? null, 2, 'both computes ran');
});

test('array keys that are not UTF-8 are keys like any other, never a panic', function () use ($m) {
    $r = $m->setMulti(["\xff\xfe" => 'v1', "k\x80" => 'v2']);
    eq($r, true, 'setMulti with non-UTF-8 keys');
    // php-memcached's own key check (text protocol: printable ASCII) refuses them for get;
    // getMulti, setMulti and deleteMulti skip that check, as there.
    eq($m->get("\xff\xfe"), false, 'get: not printable ASCII');
    eq($m->getResultCode(), Client::RES_BAD_KEY_PROVIDED, 'get: RES_BAD_KEY_PROVIDED');
    $got = $m->getMulti(["\xff\xfe", "k\x80"]);
    eq($got, ["\xff\xfe" => 'v1', "k\x80" => 'v2'], 'getMulti returns them under the same keys');
    eq(@$m->setOptions(["\xff" => 1]), false, 'setOptions with a junk key: false, no panic');
    eq($m->deleteMulti(["\xff\xfe", "k\x80"]), ["\xff\xfe" => true, "k\x80" => true], 'deleteMulti');
});

test('flush delays never bring flushed items back', function () use ($m) {
    $m->set('fl:a', 'x');
    eq($m->flush(), true, 'flush');
    eq($m->get('fl:a'), false, 'flushed');
    eq($m->flush(-1), false, 'negative delay refused');
    eq($m->getResultCode(), Client::RES_INVALID_ARGUMENTS, 'negative delay: invalid arguments');
    eq($m->get('fl:a'), false, 'still flushed after flush(-1)');
    eq($m->flush(2 ** 40), false, 'delay past 32 bits refused');
    eq($m->flush(time() + 86400 * 60), false, 'absolute delay 60 days ahead refused');
    eq($m->get('fl:a'), false, 'still flushed after the refused delays');
    $m->set('fl:b', 'y');
    eq($m->flush(time() - 10), true, 'an absolute time in the past flushes now');
    eq($m->get('fl:b'), false, 'flushed at once');
    eq($m->get('fl:a'), false, 'and the first flush still holds');
});

test('hostile $config arrays: deep nesting and self-reference are errors, not crashes', function () {
    $deep = 'x';
    for ($i = 0; $i < 5000; $i++) { $deep = ['route' => $deep]; }
    try { new Client(null, ['servers' => ['127.0.0.1:1'], 'nope' => $deep]); check(false, 'deep array throws'); }
    catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'deeper than 64'), 'deep array: ' . $e->getMessage()); }
    $self = ['servers' => ['127.0.0.1:1']];
    $self['loop'] = &$self;
    try { new Client(null, $self); check(false, 'self-referencing array throws'); }
    catch (Fae\Exception $e) { check(str_contains($e->getMessage(), 'refers to itself'), 'self reference: ' . $e->getMessage()); }
    $route = 'default';
    for ($i = 0; $i < 31; $i++) { $route = ['type' => 'failover', 'children' => [$route]]; }
    $ok = new Client(null, ['servers' => ['127.0.0.1:1'], 'route' => $route]);
    check($ok instanceof Client, '31 route levels are fine (the limit is the JSON one)');
});

$mc->stop(); $mc2->stop();
finish();
