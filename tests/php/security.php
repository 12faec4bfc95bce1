<?php
// TLS and memcached's login from PHP: the $config's "tls"/"auth" sections and php.ini's
// fae.tls* / fae.auth_* settings, against real memcached started with -Y (an auth file) and -Z
// (certificates made with the openssl command). Run like run.php:
//   php -n -d extension=$PWD/target/debug/libfae_php.so tests/php/security.php
require __DIR__ . '/lib.php';
use Fae\Client;

if (!extension_loaded('fae')) { fwrite(STDERR, "the fae extension is not loaded\n"); exit(2); }

$dir = sys_get_temp_dir() . '/fae-php-security-' . getmypid();
@mkdir($dir);
file_put_contents("$dir/auth", "app:php-secret\n");
file_put_contents("$dir/pw", "php-secret\n");
file_put_contents("$dir/wrong", "wrong-canary\n");
$mc = new Memcached_Process(['-Y', "$dir/auth"]);

test('login from the $config', function () use ($mc, $dir) {
    $m = new Client(null, ['servers' => [$mc->addr()], 'auth' => ['username' => 'app', 'password_file' => "$dir/pw"]]);
    eq($m->set('k', 'authenticated'), true, 'set after login');
    eq($m->get('k'), 'authenticated', 'get after login');
    eq($m->getMulti(['k', 'absent']), ['k' => 'authenticated'], 'getMulti after login');
});

test('a wrong password is RES_AUTH_FAILURE and never shown', function () use ($mc, $dir) {
    $m = new Client(null, ['servers' => [$mc->addr()], 'auth' => ['username' => 'app', 'password_file' => "$dir/wrong"]]);
    eq($m->get('k'), false, 'get fails');
    eq($m->getResultCode(), Client::RES_AUTH_FAILURE, 'code');
    eq($m->getResultMessage(), 'AUTHENTICATION FAILURE', 'result message');
    $msg = $m->getLastErrorMessage();
    check(str_contains($msg, 'auth_failed'), "message names the reason: $msg");
    check(!str_contains($msg, 'wrong-canary'), "no password in: $msg");
    check(!str_contains(json_encode($m->getStats()), 'wrong-canary'), 'no password in stats');
});

test('a missing password file is a config error naming the key', function () use ($mc) {
    try {
        new Client(null, ['servers' => [$mc->addr()], 'auth' => ['username' => 'app', 'password_file' => '/nonexistent/pw']]);
        check(false, 'constructor should throw');
    } catch (Fae\Exception $e) {
        check(str_contains($e->getMessage(), 'auth.password_file'), $e->getMessage());
    }
});

test('php.ini fae.auth_* log in a client whose $config has no auth', function () use ($mc, $dir) {
    $script = "\$m = new Fae\\Client(null, ['servers' => ['{$mc->addr()}']]); \$m->set('ini', 'yes'); echo \$m->get('ini'), ' ', \$m->getResultCode();";
    $cmd = array_merge(php_command(), ['-d', 'fae.auth_username=app', '-d', "fae.auth_password_file=$dir/pw", '-r', $script]);
    eq(trim((string)shell_exec(implode(' ', array_map('escapeshellarg', $cmd)))), 'yes 0', 'ini login');
    $cmd = array_merge(php_command(), ['-r', $script]);
    check(str_ends_with(trim((string)shell_exec(implode(' ', array_map('escapeshellarg', $cmd)))), '41'), 'without it: RES_AUTH_FAILURE');
});

$openssl = trim((string)shell_exec('command -v openssl'));
if ($openssl !== '') {
    $q = fn($s) => escapeshellarg($s);
    $run = fn($args) => shell_exec("openssl $args 2>/dev/null");
    $run("req -x509 -newkey rsa:2048 -nodes -keyout {$q("$dir/ca.key")} -out {$q("$dir/ca.pem")} -days 2 -subj /CN=fae-php-test-CA");
    $run("req -newkey rsa:2048 -nodes -keyout {$q("$dir/s.key")} -out {$q("$dir/s.csr")} -subj /CN=localhost");
    file_put_contents("$dir/ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    $run("x509 -req -in {$q("$dir/s.csr")} -CA {$q("$dir/ca.pem")} -CAkey {$q("$dir/ca.key")} -CAcreateserial -out {$q("$dir/s.pem")} -days 2 -extfile {$q("$dir/ext")}");
    $tls = new Memcached_TLS_Process($dir);

    test('TLS from the $config', function () use ($tls, $dir) {
        $m = new Client(null, ['servers' => [$tls->addr()], 'tls' => ['ca_file' => "$dir/ca.pem"]]);
        eq($m->set('t', 'over tls'), true, 'set over TLS');
        eq($m->get('t'), 'over tls', 'get over TLS');
        $bad = new Client(null, ['servers' => [$tls->addr()], 'tls' => ['ca_file' => "$dir/s.pem"]]);
        eq($bad->get('t'), false, 'untrusted certificate');
        eq($bad->getResultCode(), Client::RES_AUTH_FAILURE, 'tls_failed code');
        check(str_contains($bad->getLastErrorMessage(), 'tls_failed'), $bad->getLastErrorMessage());
    });

    test('php.ini fae.tls* for a client without "tls"', function () use ($tls, $dir) {
        $script = "\$m = new Fae\\Client(null, ['servers' => ['{$tls->addr()}']]); echo \$m->get('t'), ' ', \$m->getResultCode();";
        $cmd = array_merge(php_command(), ['-d', 'fae.tls=1', '-d', "fae.tls_ca_file=$dir/ca.pem", '-r', $script]);
        eq(trim((string)shell_exec(implode(' ', array_map('escapeshellarg', $cmd)))), 'over tls 0', 'ini TLS');
    });
    $tls->stop();
}

$mc->stop();
array_map('unlink', glob("$dir/*"));
@rmdir($dir);
finish();
