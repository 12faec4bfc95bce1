<?php
// php-memcached drop-in behaviour, run with ONLY the fae extension loaded (and optionally
// igbinary/msgpack), as an unchanged php-memcached application would run:
//   php -n -d extension=$PWD/target/debug/libfae_php.so tests/php/dropin.php
// Prints "N passed, N failed".
require __DIR__ . '/lib.php';

if (!extension_loaded('fae')) { fwrite(STDERR, "the fae extension is not loaded\n"); exit(2); }
if (get_parent_class('Memcached') !== 'Fae\Client') { fwrite(STDERR, "run without php-memcached loaded\n"); exit(2); }

$mc = new Memcached_Process();
[$host, $port] = ['127.0.0.1', $mc->port];
function fresh(): Memcached {
    global $host, $port;
    $m = new Memcached();
    $m->addServer($host, $port);
    return $m;
}

test('php.ini switch: Memcached and MemcachedException are provided', function () {
    check(class_exists('Memcached', false), 'Memcached exists');
    eq(get_parent_class('Memcached'), 'Fae\Client', 'Memcached extends Fae\Client');
    eq(class_parents('MemcachedException'), ['Fae\Exception' => 'Fae\Exception', 'RuntimeException' => 'RuntimeException', 'Exception' => 'Exception'], 'MemcachedException parents');
    $e = new MemcachedException('boom', 7);
    eq([$e->getMessage(), $e->getCode()], ['boom', 7], 'MemcachedException is constructible');
    eq(get_class(new Memcached()), 'Memcached', 'new Memcached');
    eq(Memcached::HAVE_IGBINARY, extension_loaded('igbinary'), 'HAVE_IGBINARY follows the loaded extensions');
    eq(Memcached::HAVE_MSGPACK, extension_loaded('msgpack'), 'HAVE_MSGPACK too');
    eq(ini_get('fae.provide_memcached_classes'), '1', 'default on');
    // Frameworks detect php-memcached by its module name and version (Symfony: >= 3.1.6).
    check(extension_loaded('memcached'), "extension_loaded('memcached')");
    eq(phpversion('memcached'), '3.2.0', "phpversion('memcached')");
    check(in_array('memcached', get_loaded_extensions(), true), 'listed by get_loaded_extensions');
    check(isset(ini_get_all('memcached')['memcached.sess_prefix']), 'memcached.* settings belong to the memcached module');
    check(!isset(ini_get_all('fae')['memcached.sess_prefix']), 'and not to fae');
    eq((new ReflectionExtension('memcached'))->getVersion(), '3.2.0', 'ReflectionExtension');
    eq((new ReflectionClass('Memcached'))->getExtensionName(), 'memcached', 'Memcached belongs to it');
    eq(array_keys((new ReflectionExtension('memcached'))->getClasses()), ['Memcached', 'MemcachedException'], 'its classes');
    $php = php_command();
    $off = shell_exec(implode(' ', array_map('escapeshellarg', array_merge($php, ['-d', 'fae.provide_memcached_classes=0', '-r', 'var_export([class_exists("Memcached"), class_exists("Fae\\\\Client"), class_exists("Fae\\\\Exception"), extension_loaded("memcached"), ini_get("memcached.sess_prefix")]);']))));
    eq($off, "array (\n  0 => false,\n  1 => true,\n  2 => true,\n  3 => false,\n  4 => false,\n)", 'off keeps only Fae\*, no memcached module');
});

test('phpinfo says what the extension serves', function () {
    ob_start(); phpinfo(INFO_MODULES); $info = ob_get_clean();
    check(str_contains($info, 'provides Memcached, MemcachedException => yes'), 'provides line');
    check(str_contains($info, 'session save handlers => fae, memcached'), 'session handlers line');
    check(str_contains($info, 'memcached.sess_prefix => memc.sess.key.'), 'php.ini settings listed');
    // php-memcached's section, as scripts and monitoring grep it.
    $lines = preg_grep('/^memcached/', explode("\n", $info));
    eq(array_slice(array_values($lines), 0, 2), ['memcached', 'memcached support => enabled'], 'memcached section first rows');
    check(str_contains($info, "Version => 3.2.0"), 'its Version row');
});

test('our errors are MemcachedException (and Fae\Exception)', function () {
    try { new Memcached(null, ['servers' => 'not a list']); check(false, 'bad config throws'); }
    catch (MemcachedException $e) { check($e instanceof Fae\Exception, 'caught as both'); }
});

test('constructor: callback once per new persistent id, connection string, fromConfig', function () use ($host, $port) {
    $calls = [];
    $cb = function ($m, $id) use (&$calls, $host, $port) {
        $calls[] = [get_class($m), $id];
        $m->addServer($host, $port);
    };
    $id = 'dropin-' . getmypid();
    $a = new Memcached($id, $cb);
    $b = new Memcached($id, $cb);
    eq($calls, [['Memcached', $id]], 'called once, with the object and the id');
    eq(count($b->getServerList()), 1, 'the second object shares what the callback set up');
    check(!$b->isPristine(), 'second object not pristine');
    $calls = [];
    new Memcached(null, $cb); new Memcached(null, $cb);
    eq(count($calls), 2, 'without a persistent id: every time');
    eq($calls[0][1], null, 'id is null');
    try { new Memcached(null, function () { throw new RuntimeException('from cb'); }); check(false, 'throws'); }
    catch (RuntimeException $e) { eq($e->getMessage(), 'from cb', 'a callback exception leaves new'); }
    $c = new Memcached(null, null, "--SERVER=$host:$port --BINARY-PROTOCOL");
    eq(count($c->getServerList()), 1, 'connection string servers');
    eq($c->set('dropin:cs', 'v'), true, 'and they serve');
    $d = Fae\Client::fromConfig(['servers' => ["$host:$port"]]);
    eq($d->get('dropin:cs'), 'v', 'fromConfig(array)');
    $f = tempnam(sys_get_temp_dir(), 'fae-cfg');
    file_put_contents($f, json_encode(['servers' => ["$host:$port"]]));
    eq(Fae\Client::fromConfig($f)->get('dropin:cs'), 'v', 'fromConfig(JSON file)');
    unlink($f);
    try { new Memcached((object)[]); check(false, 'object persistent id throws'); }
    catch (TypeError $t) { eq($t->getMessage(), 'Memcached::__construct(): Argument #1 ($persistent_id) must be of type ?string, stdClass given', 'php-memcached\'s TypeError'); }
    check((new Memcached(123))->isPersistent(), 'an int persistent id is a string id');
    $e = new Memcached(null, ['servers' => ["$host:$port"]]);
    eq($e->get('dropin:cs'), 'v', 'a config array in the second place still works');
});

test('getDelayed, getDelayedByKey, fetch, fetchAll', function () {
    $m = fresh();
    $m->setMulti(['gd:a' => 1, 'gd:b' => 'two']);
    eq($m->getDelayed(['gd:a', 'gd:b', 'gd:none']), true, 'getDelayed');
    eq($m->fetch(), ['key' => 'gd:a', 'value' => 1], 'fetch one');
    eq($m->fetchAll(), [['key' => 'gd:b', 'value' => 'two']], 'fetchAll the rest');
    eq($m->fetch(), false, 'fetch when none left');
    eq($m->getResultCode(), Memcached::RES_END, 'RES_END');
    eq($m->getDelayedByKey('srv', ['gd:a'], true), true, 'getDelayedByKey with cas');
    $r = $m->fetch();
    check(is_int($r['cas']) && $r['cas'] > 0 && $r['flags'] === 0, 'cas and flags with $with_cas');
    $seen = [];
    eq($m->getDelayed(['gd:a', 'gd:b'], false, function ($memc, $r) use (&$seen, $m) { $seen[] = $r['key']; check($memc === $m, 'callback gets the object'); }), true, 'with callback');
    eq($seen, ['gd:a', 'gd:b'], 'callback per result');
    eq($m->fetch(), false, 'callback results are not queued');
});

test('checkKey, flushBuffers, setBucket, binary protocol, result messages', function () {
    $m = fresh();
    eq($m->checkKey('ok_key'), true, 'valid key');
    eq($m->checkKey('with space'), false, 'space');
    eq($m->getResultCode(), Memcached::RES_BAD_KEY_PROVIDED, 'bad key code');
    eq($m->checkKey(str_repeat('k', 251)), false, 'too long');
    eq($m->flushBuffers(), true, 'flushBuffers');
    // php-memcached's vbucket tests: any map of non-negative integers is accepted (strings
    // count as 0), with or without a forward map of the same length.
    eq($m->setBucket(['a', 'b', 'c'], null, 2), true, 'setBucket of strings');
    eq($m->getResultCode(), Memcached::RES_SUCCESS, 'setBucket code');
    eq($m->getOption(Memcached::OPT_DISTRIBUTION), Memcached::DISTRIBUTION_VIRTUAL_BUCKET, 'distribution is virtual bucket');
    eq($m->set('vb:s', 'v'), true, 'strings are server 0');
    eq($m->setBucket([1, 2, 3], null, 2), true, 'setBucket');
    eq($m->setBucket([1, 2, 2], [1, 2, 2], 2), true, 'setBucket with a forward map');
    // Server 1 does not exist on a one-server client: the next command says so (libmemcached
    // would index past its server array).
    eq($m->set('vb:k', 'v'), false, 'a map naming a missing server fails');
    eq($m->getResultCode(), Memcached::RES_INVALID_ARGUMENTS, 'its code');
    eq($m->setBucket([0, 0], null, 0), true, 'a valid map');
    eq($m->set('vb:k', 'v'), true, 'then commands work');
    eq($m->get('vb:k'), 'v', 'and read back');
    eq(@$m->setBucket([], [], -1), false, 'empty map with bad replicas');
    eq(@$m->setBucket([], null, 0), false, 'empty map');
    eq(error_get_last()['message'] ?? '', 'Memcached::setBucket(): server map cannot be empty', 'empty map warning');
    eq($m->setOption(Memcached::OPT_BINARY_PROTOCOL, true), true, 'binary protocol accepted');
    eq($m->getOption(Memcached::OPT_BINARY_PROTOCOL), 1, 'reported as set');
    eq($m->set('bp:k', 'v'), true, 'and requests still work');
    eq($m->get('bp:absent'), false, 'miss');
    eq($m->getResultMessage(), 'NOT FOUND', 'message is the code text');
    $n = new Memcached();
    eq($n->get('x'), false, 'no servers');
    eq($n->getResultMessage(), 'NO SERVERS DEFINED', 'no reason appended');
    check(strlen($n->getLastErrorMessage()) > strlen('NO SERVERS DEFINED'), 'reason in getLastErrorMessage');
});

test('php-memcached results and warnings for odd arguments', function () use ($host, $port) {
    $m = fresh();
    eq($m->setByKey('', 'bk:a', 1), true, 'empty server key: placed by the key');
    eq($m->getByKey('', 'bk:a'), 1, 'getByKey with an empty server key');
    eq($m->getMulti([]), [], 'getMulti of nothing');
    eq($m->getResultCode(), Memcached::RES_NOTFOUND, 'is NOTFOUND');
    $obj = new class { public function __toString(): string { return 'ts:key'; } };
    eq($m->set($obj, 'v'), true, 'an object with __toString is a key');
    eq($m->get('ts:key'), 'v', 'stored under its string');
    eq($m->getMulti([$obj]), ['ts:key' => 'v'], 'also in getMulti');
    eq(@$m->set(null, 'v'), false, 'set(null, ...) is false');
    eq($m->getResultCode(), Memcached::RES_BAD_KEY_PROVIDED, 'with a bad-key code');
    $m->set('neg', 5);
    eq(@$m->increment('neg', -1), false, 'negative offset: false');
    eq(error_get_last()['message'] ?? '', 'Memcached::increment(): offset cannot be a negative value', 'php-memcached\'s warning');
    eq($m->get('neg'), 5, 'value untouched');
    $f = new Fae\Client(); $f->addServer($host, $port);
    @$f->increment('neg', -1);
    eq(error_get_last()['message'] ?? '', 'Fae\Client::increment(): offset cannot be a negative value', 'a Fae\Client names its own class');
    $sub = new class extends Memcached {}; $sub->addServer($host, $port);
    @$sub->increment('neg', -1);
    eq(error_get_last()['message'] ?? '', 'Memcached::increment(): offset cannot be a negative value', 'a Memcached subclass says Memcached');
    eq($m->cas(null, 'neg', 6), false, 'null CAS token: false');
    check(in_array($m->getResultCode(), [Memcached::RES_DATA_EXISTS, Memcached::RES_NOTFOUND], true), 'with a result code');
    $m->setOption(Memcached::OPT_COMPRESSION, true);
    eq(@$m->append('neg', 'x'), null, 'append with compression: null');
    eq(error_get_last()['message'] ?? '', 'Memcached::append(): cannot append/prepend with compression turned on', 'and its warning');
    eq(@$m->setOption(Memcached::OPT_PREFIX_KEY, "\x01"), false, 'bad prefix');
    eq(error_get_last()['message'] ?? '', 'Memcached::setOption(): bad key provided', 'bad prefix warning');
    eq(@$m->setOptions(['not_an_option' => 1]), false, 'string option name');
    eq(error_get_last()['message'] ?? '', 'Memcached::setOptions(): invalid configuration option', 'its warning');
    $n = new Memcached();
    eq(@$n->getOption(Memcached::OPT_SOCKET_SEND_SIZE), null, 'socket option with no servers: NULL');
    eq(error_get_last()['message'] ?? '', 'Memcached::getOption(): no servers defined', 'its warning');
});

test('server lists as php-memcached reports them', function () use ($host, $port) {
    $m = new Memcached();
    eq($m->addServers([['KEYHERE' => $host, $port, 3]]), true, 'entry with a string key');
    eq($m->getServerList(), [['host' => $host, 'port' => $port, 'type' => 'TCP']], 'host, port, type');
    $m->addServers([['KEYHERE' => $host, $port, 3]]);
    eq(count($m->getServerList()), 2, 'the same server twice is listed twice');
    eq($m->set('dup:k', 1), true, 'and calls still work');
    eq($m->getServerByKey('dup:k'), ['host' => $host, 'port' => $port, 'weight' => 0], 'getServerByKey: host, port, weight 0');
    eq(@$m->addServers(['nope']), true, 'a non-array entry is skipped');
    eq(error_get_last()['message'] ?? '', 'Memcached::addServers(): server list entry #1 is not an array', 'with its warning');
});

test('callback exceptions, option reads, buffered writes', function () use ($host, $port) {
    $id = 'dropin-throw-' . getmypid();
    $n = 0;
    $throw = function () use (&$n) { $n++; throw new RuntimeException('no'); };
    foreach ([1, 2] as $_) { try { new Memcached($id, $throw); } catch (RuntimeException $e) {} }
    eq($n, 2, 'a throwing callback leaves the persistent id unused: called again');
    $called = 0;
    new Memcached($id, function () use (&$called) { $called++; });
    new Memcached($id, function () use (&$called) { $called++; });
    eq($called, 1, 'then a good callback runs once');
    $m = fresh();
    $m->get('absent:key');
    $m->getOption(Memcached::OPT_BINARY_PROTOCOL);
    eq($m->getResultCode(), Memcached::RES_NOTFOUND, 'getOption leaves the result code alone');
    eq($m->setOption(Memcached::OPT_BUFFER_WRITES, true), true, 'OPT_BUFFER_WRITES accepted');
    eq($m->getOption(Memcached::OPT_BUFFER_WRITES), 1, 'and reported');
    eq($m->set('bw:k', 'v'), true, 'a write');
    eq($m->flushBuffers(), true, 'flushBuffers');
    eq($m->get('bw:k'), 'v', 'the write is there');
});

test('memcached.* php.ini settings apply to new objects', function () {
    eq(ini_get('memcached.serializer'), 'php', 'memcached.serializer declared, php-memcached\'s default');
    eq((new Memcached())->getOption(Memcached::OPT_SERIALIZER), Memcached::SERIALIZER_PHP, 'default serializer');
    ini_set('memcached.serializer', 'json');
    ini_set('memcached.default_consistent_hash', '1');
    ini_set('memcached.default_binary_protocol', '1');
    ini_set('memcached.default_connect_timeout', '1212');
    $m = new Memcached();
    eq($m->getOption(Memcached::OPT_SERIALIZER), Memcached::SERIALIZER_JSON, 'memcached.serializer');
    eq($m->getOption(Memcached::OPT_DISTRIBUTION), Memcached::DISTRIBUTION_CONSISTENT, 'default_consistent_hash');
    eq($m->getOption(Memcached::OPT_BINARY_PROTOCOL), 1, 'default_binary_protocol');
    eq($m->getOption(Memcached::OPT_CONNECT_TIMEOUT), 1212, 'default_connect_timeout');
    foreach (['serializer', 'default_consistent_hash', 'default_binary_protocol', 'default_connect_timeout'] as $k) ini_restore("memcached.$k");
    eq([ini_get('memcached.default_binary_protocol'), ini_get('memcached.serializer')], ['0', 'php'], 'ini_restore() restores them');
    eq(@ini_set('memcached.sess_prefix', ' bad '), false, 'sess_prefix with spaces refused');
    eq(error_get_last()['message'] ?? '', 'ini_set(): memcached.sess_prefix cannot contain whitespace or control characters', 'its warning');
    eq(@ini_set('memcached.sess_prefix', str_repeat('a', 300)), false, 'too long');
    eq(error_get_last()['message'] ?? '', 'ini_set(): memcached.sess_prefix too long (max: 249)', 'its warning');
    eq(ini_get('memcached.sess_prefix'), 'memc.sess.key.', 'unchanged');
});

test('session.save_handler = memcached (and = fae) from php.ini alone', function () use ($host, $port) {
    $script = sys_get_temp_dir() . '/fae-dropin-sess-' . getmypid() . '.php';
    file_put_contents($script, <<<'PHP'
<?php
ob_start();
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
$id = session_id();
session_write_close();
$_SESSION = [];
session_id($id);
session_start();
$n = $_SESSION['n'];
$m = new Memcached(); [$h, $p] = explode(':', ini_get('session.save_path'));
$m->addServer($h, (int)$p);
$raw = $m->get(ini_get('memcached.sess_prefix') . $id);
session_destroy();
$gone = $m->get(ini_get('memcached.sess_prefix') . $id);
ob_end_clean();
echo json_encode([$n, $raw, $gone]);
PHP);
    foreach (['memcached', 'fae'] as $handler) {
        $cmd = array_merge(php_command(), ['-d', "session.save_handler=$handler", '-d', "session.save_path=$host:$port", '-d', 'memcached.sess_prefix=dropin.sess.', $script]);
        $out = shell_exec(implode(' ', array_map('escapeshellarg', $cmd)));
        eq(json_decode((string)$out, true), [1, 'n|i:1;', false], "$handler: session written, read back under the prefix, destroyed");
    }
    $cmd = array_merge(php_command(), ['-d', 'session.save_handler=memcached', '-d', 'session.save_path=', '-r', 'ob_start(); @session_start(); echo error_get_last()["message"] ?? "";']);
    eq(shell_exec(implode(' ', array_map('escapeshellarg', $cmd))), 'session_start(): Failed to initialize storage module: memcached (path: )', 'an empty save path fails like php-memcached');
    unlink($script);
});

test('setBucket checks, getDelayed of nothing, serializer setting, unknown options', function () {
    $m = fresh();
    eq(@$m->setBucket([-1], [-1], 1), false, 'negative map entries');
    eq(error_get_last()['message'] ?? '', 'Memcached::setBucket(): the map must contain positive integers', 'its warning');
    eq(@$m->setBucket([1, 2], [1], 1), false, 'forward map length');
    eq(error_get_last()['message'] ?? '', 'Memcached::setBucket(): forward_map length must match the server_map length', 'its warning');
    try { $m->setBucket(null, [], 1); check(false, 'null map throws'); }
    catch (TypeError $e) { eq($e->getMessage(), 'Memcached::setBucket(): Argument #1 ($host_map) must be of type array, null given', 'TypeError text'); }
    eq($m->getDelayed([]), false, 'getDelayed of no keys is false');
    foreach (['asdf', '', 'php.'] as $bad) eq(ini_set('memcached.serializer', $bad), false, "serializer '$bad' refused");
    eq(ini_get('memcached.serializer'), 'php', 'unchanged');
    eq(@$m->setOption(-1, 1), false, 'unknown negative option');
    eq(error_get_last()['message'] ?? '', 'Memcached::setOption(): error setting memcached option: INVALID ARGUMENTS', 'warns');
});

test('session lock waits as php-memcached (lock_retries + 1 attempts, doubling sleeps)', function () use ($host, $port) {
    $m = fresh();
    $sid = 'dropinlock' . getmypid();
    $m->set("dropin.lock.lock.$sid", '1');
    $cmd = array_merge(php_command(), ['-d', 'session.save_handler=memcached', '-d', "session.save_path=$host:$port",
        '-d', 'memcached.sess_prefix=dropin.lock.', '-d', 'memcached.sess_lock_wait_min=100', '-d', 'memcached.sess_lock_wait_max=200',
        '-d', 'memcached.sess_lock_retries=3', '-r',
        "ob_start(); session_id('$sid'); \$t = microtime(true); \$ok = @session_start(); \$e = error_get_last()['message'] ?? ''; ob_end_clean(); echo json_encode([\$ok, round(microtime(true) - \$t, 1)]);"]);
    $out = json_decode((string)shell_exec(implode(' ', array_map('escapeshellarg', $cmd))), true);
    eq($out[0] ?? null, false, 'a held lock fails session_start');
    eq($out[1] ?? null, 0.5, 'after 100 + 200 + 200 ms of waiting');
    $m->delete("dropin.lock.lock.$sid");
});

test('clone and a subclass that never ran the parent constructor fail as with php-memcached', function () {
    $m = fresh();
    try { $c = clone $m; check(false, 'clone throws'); }
    catch (Error $e) { eq($e->getMessage(), 'Trying to clone an uncloneable object of class Memcached', 'clone error names the class'); }
    $sub = new class extends Memcached { public function __construct() {} };
    foreach (['setOption' => [Memcached::OPT_BINARY_PROTOCOL, true], 'get' => ['k'], 'getServerList' => [], 'getResultCode' => []] as $method => $args) {
        try { $sub->$method(...$args); check(false, "$method throws"); }
        catch (Error $e) { eq([get_class($e), $e->getMessage()], ['Error', 'Memcached constructor was not called'], "$method"); }
    }
    $fae = new class extends Fae\Client { public function __construct() {} };
    try { $fae->get('k'); check(false, 'Fae\Client subclass throws'); }
    catch (Error $e) { eq($e->getMessage(), 'Fae\Client constructor was not called', 'names Fae\Client'); }
    $ok = new class extends Memcached { public function __construct() { parent::__construct('dropin-sub-' . getmypid()); } };
    eq($ok->getServerList(), [], 'a subclass that calls the parent constructor works');
    eq(Fae\Client::fromConfig(['servers' => ['127.0.0.1:1']])->getResultCode(), Memcached::RES_SUCCESS, 'static methods are not guarded');
});

test("keys as php-memcached checks them: text protocol printable ASCII, binary protocol anything but a newline", function () {
    $m = fresh();
    foreach (['Montréal', 'foo bar', "tab\tkey", str_repeat('c', 251), ''] as $k) {
        eq([$m->set($k, 'v'), $m->getResultCode()], [false, Memcached::RES_BAD_KEY_PROVIDED], 'text: set ' . json_encode($k));
        eq($m->checkKey($k), false, 'text: checkKey ' . json_encode($k));
    }
    eq([$m->get('Kraków'), $m->getResultCode()], [false, Memcached::RES_BAD_KEY_PROVIDED], 'text: get of a UTF-8 key');
    eq($m->checkKey(str_repeat('b', 250)), true, '250 bytes are fine');
    $b = fresh();
    eq($b->setOption(Memcached::OPT_BINARY_PROTOCOL, true), true, 'binary protocol');
    foreach (['binary key with spaces', 'Montréal', "ctl\x01\x00\r-key", 'Тестирование'] as $i => $k) {
        eq($b->set($k, "v$i"), true, 'binary: set ' . json_encode($k));
        eq($b->get($k), "v$i", 'binary: get ' . json_encode($k));
        eq($b->checkKey($k), true, 'binary: checkKey ' . json_encode($k));
    }
    eq($b->getMulti(['binary key with spaces', 'Montréal']), ['binary key with spaces' => 'v0', 'Montréal' => 'v1'], 'binary: getMulti');
    eq([$b->set("nl\n", 'v'), $b->getResultCode()], [false, Memcached::RES_BAD_KEY_PROVIDED], 'binary: a newline is refused');
    eq([$b->set(str_repeat('x', 251), 'v'), $b->getResultCode()], [false, Memcached::RES_BAD_KEY_PROVIDED], 'binary: 251 bytes refused');
    eq($m->get('Montréal'), false, 'the text-protocol client still refuses it');
    eq($b->delete('Montréal'), true, 'binary: delete');
    eq($b->setOption(Memcached::OPT_BINARY_PROTOCOL, false), true, 'back to text');
    eq([$b->get('binary key with spaces'), $b->getResultCode()], [false, Memcached::RES_BAD_KEY_PROVIDED], 'text again: refused');
});

test('a server key is only hashed: spaces and any bytes place a key', function () {
    $m = fresh();
    eq($m->setByKey(" \xff server key ", 'sk:1', 'v'), true, 'setByKey');
    eq($m->getByKey(" \xff server key ", 'sk:1'), 'v', 'getByKey');
    eq($m->getByKey('', 'sk:1'), 'v', 'an empty server key places by the key');
    $m->delete('sk:1');
    eq([$m->getByKey(' x y ', 'sk:1'), $m->getResultMessage()], [false, 'NOT FOUND'], 'a miss is NOT FOUND, not a bad key');
});

test('getStats keeps its connection between calls (php-memcached reconnects only with NO_BLOCK + BINARY_PROTOCOL)', function () use ($host, $port) {
    $m = fresh();
    $total = fn() => $m->getStats()["$host:$port"]['total_connections'] ?? null;
    $first = $total();
    check(is_int($first), 'total_connections read');
    eq($total(), $first, 'the second call reuses the connection');
    eq($total(), $first, 'and the third');
    $m->setOption(Memcached::OPT_NO_BLOCK, true);
    $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
    $a = $total();
    check($total() !== $a, 'NO_BLOCK + BINARY_PROTOCOL: a new connection per call, as php-memcached');
    $m->setOption(Memcached::OPT_NO_BLOCK, false);
    $b = $total();
    eq($total(), $b, 'one of them off: kept again');
});

test('OPT_BUFFER_WRITES holds set and delete back until another command, flushBuffers() or the object ends', function () {
    $m = fresh();
    $o = fresh();
    $m->setOption(Memcached::OPT_BUFFER_WRITES, true);
    $k = 'bw:' . getmypid();
    eq([$m->set("$k:a", '1'), $m->getResultCode()], [true, Memcached::RES_BUFFERED], 'set: true, RES_BUFFERED');
    eq($o->get("$k:a"), false, 'not on the server yet');
    eq($m->setMulti(["$k:b" => '2', "$k:c" => '3']), true, 'setMulti held back too');
    eq($m->setByKey('sk', "$k:d", '4'), true, 'setByKey too');
    eq($o->getMulti(["$k:b", "$k:d"]), [], 'none of them');
    eq($m->flushBuffers(), true, 'flushBuffers');
    eq($o->getMulti(["$k:a", "$k:b", "$k:c"]), ["$k:a" => '1', "$k:b" => '2', "$k:c" => '3'], 'all there, in order');
    eq($o->getByKey('sk', "$k:d"), '4', 'placed by its server key');
    eq([$m->delete("$k:a"), $m->getResultCode()], [true, Memcached::RES_BUFFERED], 'delete held back');
    eq($o->get("$k:a"), '1', 'still there');
    eq($m->add("$k:e", '5'), true, 'add is not held back, and sends what was');
    eq([$o->get("$k:a"), $o->get("$k:e")], [false, '5'], 'the delete went first');
    $m->set("$k:f", '6');
    eq($m->get("$k:nothing"), false, 'a read');
    eq($o->get("$k:f"), '6', 'sent the held write before it');
    $m->set("$k:g", '7');
    unset($m);
    eq($o->get("$k:g"), '7', 'the object going away sends the rest');
});

class DropinBadWakeup { public $x = 1; public function __unserialize(array $d): void { throw new RuntimeException('wakeup failed'); } }

test('a value that does not unserialize warns as php-memcached, and the exception leaves the call', function () {
    $m = fresh();
    $m->set('bu:ok', 'fine');
    $m->set('bu:bad', new DropinBadWakeup());
    foreach (['get' => fn() => $m->get('bu:bad'), 'getMulti' => fn() => $m->getMulti(['bu:ok', 'bu:bad'])] as $name => $call) {
        error_clear_last();
        try { @$call(); check(false, "$name throws"); }
        catch (RuntimeException $e) { eq($e->getMessage(), 'wakeup failed', "$name: the exception"); }
        eq(error_get_last()['message'] ?? '', "Memcached::$name(): could not unserialize value", "$name: the warning");
    }
    eq($m->get('bu:ok'), 'fine', 'other values still read');
    // getDelayed fetches; fetch()/fetchAll() decode, so the failure comes from them.
    foreach (['fetch', 'fetchAll'] as $name) {
        eq($m->getDelayed(['bu:bad']), true, "getDelayed before $name");
        error_clear_last();
        try { @$m->$name(); check(false, "$name throws"); }
        catch (RuntimeException $e) { eq($e->getMessage(), 'wakeup failed', "$name: the exception"); }
        eq(error_get_last()['message'] ?? '', "Memcached::$name(): could not unserialize value", "$name: the warning");
    }
    eq($m->getDelayed(['bu:ok'], true), true, 'getDelayed with CAS');
    $r = $m->fetch();
    eq([$r['key'], $r['value'], is_int($r['cas']), $r['flags']], ['bu:ok', 'fine', true, 0], 'fetch: key, value, cas, flags');
    eq([$m->fetch(), $m->getResultCode()], [false, Memcached::RES_END], 'then RES_END');
});

test('setEncodingKey: values stored encrypted, another key reads as a miss, append and increment refused', function () use ($host, $port) {
    eq(Memcached::HAVE_ENCODING, true, 'HAVE_ENCODING');
    $m = fresh();
    $plain = fresh();
    $plain->setOption(Memcached::OPT_COMPRESSION, false);
    eq($m->setEncodingKey('Hello'), true, 'setEncodingKey');
    eq($m->getResultCode(), Memcached::RES_SUCCESS, 'RES_SUCCESS');
    eq($m->set('enc:a', 'set using encoding'), true, 'set');
    eq($m->get('enc:a'), 'set using encoding', 'get');
    $stored = $plain->get('enc:a', null, Memcached::GET_EXTENDED);
    eq([strlen($stored['value']), $stored['flags']], [32, 0], 'stored: two AES blocks, flags as without a key');
    eq($m->setEncodingKey('World'), true, 'another key');
    eq([$m->get('enc:a'), $m->getResultCode()], [false, Memcached::RES_NOTFOUND], 'a value of another key: false, NOTFOUND');
    eq($m->getResultMessage(), 'NOT FOUND', 'php-memcached\'s message');
    eq([$m->get('enc:a', null, Memcached::GET_EXTENDED), $m->getResultCode()], [false, Memcached::RES_NOTFOUND], 'GET_EXTENDED too');
    eq($m->set('enc:b', ['x' => [1, 2]]), true, 'set an array under World');
    eq([$m->getMulti(['enc:a']), $m->getResultCode()], [[], Memcached::RES_NOTFOUND], 'getMulti, nothing decrypts: [] and NOTFOUND');
    eq([$m->getMulti(['enc:b', 'enc:a']), $m->getResultCode()], [false, Memcached::RES_FAILURE], 'getMulti, one decrypts: false and FAILURE, as libmemcached\'s fetch');
    eq($m->getDelayed(['enc:b', 'enc:a']), true, 'getDelayed');
    eq([$m->fetchAll(), $m->getResultCode()], [false, Memcached::RES_FAILURE], 'fetchAll likewise');
    eq([$plain->set('enc:plain', 'not encrypted'), $m->get('enc:plain'), $m->getResultCode()], [true, false, Memcached::RES_NOTFOUND], 'an unencrypted value is a miss');
    eq($m->setEncodingKey('Hello'), true, 'back to the first key');
    eq($m->get('enc:a'), 'set using encoding', 'its value reads again');
    eq($m->set('enc:big', str_repeat('compress me ', 1000)), true, 'compressed, then encrypted');
    $c = stream_socket_client("tcp://$host:$port");
    fwrite($c, "mg enc:big v f\r\n");
    [, $n, $f] = explode(' ', trim(fgets($c)));
    eq([(int)$n % 16, (int)substr($f, 1) & 0x10], [0, 0x10], 'stored: whole blocks, the compressed flag kept');
    fclose($c);
    eq($m->get('enc:big'), str_repeat('compress me ', 1000), 'read back');
    $m->setOption(Memcached::OPT_COMPRESSION, false);
    eq([$m->append('enc:a', 'x'), $m->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], 'append refused');
    eq([$m->prepend('enc:a', 'x'), $m->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], 'prepend refused');
    eq([$m->increment('enc:n'), $m->getResultCode()], [false, Memcached::RES_NOT_SUPPORTED], 'increment refused');
    eq([$m->touch('enc:a', 100), $m->get('enc:a')], [true, 'set using encoding'], 'touch works');
    $g = $m->get('enc:a', null, Memcached::GET_EXTENDED);
    eq($m->cas($g['cas'], 'enc:a', 'swapped'), true, 'cas encrypts');
    eq([$m->add('enc:c', 'added'), $m->replace('enc:c', 'replaced'), $m->get('enc:c')], [true, true, 'replaced'], 'add, replace');
    eq([$m->setMulti(['enc:m1' => 1, 'enc:m2' => 'two']), $m->getMulti(['enc:m1', 'enc:m2'])], [true, ['enc:m1' => 1, 'enc:m2' => 'two']], 'setMulti, getMulti');
    eq([$m->get('enc:a'), strlen($plain->get('enc:m2'))], ['swapped', 16], 'all stored encrypted');
    // php.ini's fae.encoding_scheme: libmemcached 1.0's ECB (a vector of that scheme), or refused.
    $script = sys_get_temp_dir() . '/fae-dropin-enc-' . getmypid() . '.php';
    file_put_contents($script, <<<'PHP'
<?php
[, $h, $p] = $argv;
$m = new Memcached(); $m->addServer($h, (int)$p); $m->setOption(Memcached::OPT_COMPRESSION, false);
$ok = $m->setEncodingKey('0123456789abcdef0123456789abcdefXYZ');
$code = $m->getResultCode();
$m->set('enc:ecb', 'set using encoding');
$r = new Memcached(); $r->addServer($h, (int)$p);
echo json_encode([$ok, $code, bin2hex((string)$r->get('enc:ecb')), $m->get('enc:ecb')]);
PHP);
    $run = fn (string $scheme) => json_decode((string)shell_exec(implode(' ', array_map('escapeshellarg', array_merge(php_command(), ['-d', "fae.encoding_scheme=$scheme", $script, $host, (string)$port])))), true);
    eq($run('libmemcached-1.0'), [true, Memcached::RES_SUCCESS, '4060534d521e20e8cdc44ec5305cd43cf7a2c88bb22e2fc7ee04daefe16e74cd', 'set using encoding'], 'libmemcached-1.0: AES-256-ECB, folded key');
    eq($run('libmemcached-1.1'), [true, Memcached::RES_SUCCESS, '85eb93a55d34b2b1bf840d34b6e764b84fb02b68c5ffba3bbab580b685ea82f6', 'set using encoding'], 'libmemcached-1.1: the bytes php-memcached stores');
    eq($run('aes')[0] ?? null, false, 'an unknown scheme: setEncodingKey fails');
    unlink($script);
});

finish();
