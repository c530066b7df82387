// The ssh transport with a fake ssh (a shell script that runs the remote command locally), and
// destination parsing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  openDestination,
  parseDestination,
  senderHandshake,
  shellQuote,
  sshArgv,
  sshChannel,
  ChildExitError,
  TransportConfigError,
} from '../../src/transport/index.js';
import { buildTransportForChildren, FakeGuest, sha256, tempDir } from './helpers.js';

const PEER = new URL('./fixtures/peer.mjs', import.meta.url).pathname;
let tmp: ReturnType<typeof tempDir>;
let built: ReturnType<typeof buildTransportForChildren>;
let fakeSsh: string;

beforeAll(() => {
  tmp = tempDir('xenmig ssh test '); // a space in the path exercises quoting
  built = buildTransportForChildren();
  fakeSsh = join(tmp.dir, 'ssh');
  writeFileSync(
    fakeSsh,
    [
      '#!/bin/sh',
      '# fake ssh: log argv, skip options up to "--", run the remote command with a local shell',
      'printf "%s\\n" "$@" > "$FAKE_SSH_LOG"',
      'if [ -n "$FAKE_SSH_FAIL" ]; then echo "Permission denied (publickey)." >&2; exit 255; fi',
      'while [ $# -gt 0 ] && [ "$1" != "--" ]; do shift; done',
      'shift',
      'exec sh -c "$*"',
      '',
    ].join('\n'),
  );
  chmodSync(fakeSsh, 0o755);
});
afterAll(() => {
  tmp.cleanup();
  built.cleanup();
});

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${tmp.dir}:${process.env.PATH}`,
    FAKE_SSH_LOG: join(tmp.dir, 'argv.log'),
    ...extra,
  };
}

describe('ssh transport', () => {
  for (const protocol of ['xenmig', 'xl'] as const) {
    it(`migrates 4 MiB to a remote stdio receiver through (fake) ssh — ${protocol} handshake`, async () => {
      const result = join(tmp.dir, `result-${protocol}.json`);
      const ch = await sshChannel({
        host: 'dst.example',
        user: 'root',
        port: 2222,
        sshCommand: [fakeSsh],
        env: env(),
        remoteCommand: [process.execPath, PEER, built.dir, 'receiver', protocol, result],
        forwardStderr: true,
      });
      expect(ch.kind).toBe('ssh');
      expect(typeof ch.writeFd).toBe('number');
      const g = new FakeGuest(4 * 1024 * 1024);
      const res = await senderHandshake(ch, g.sender(), { protocol });
      expect(res.outcome).toBe('handed-over');
      if (protocol === 'xenmig')
        expect(res.peer).toMatchObject({ protocol: 'xenmig', version: 'test-peer', capabilities: ['test'] });
      await ch.closed;
      expect(ch.error).toBeUndefined();
      const remote = JSON.parse(readFileSync(result, 'utf8'));
      expect(remote).toMatchObject({ outcome: 'running', bytes: g.payload.length, sha: sha256(g.payload) });
      const argv = readFileSync(join(tmp.dir, 'argv.log'), 'utf8').trimEnd().split('\n');
      expect(argv.slice(0, 8)).toEqual([
        '-T',
        '-o',
        'BatchMode=yes',
        '-p',
        '2222',
        '-l',
        'root',
        'dst.example',
      ]);
      expect(argv[8]).toBe('--');
    });
  }

  it('finds ssh on PATH via openDestination("ssh://user@host:port")', async () => {
    const result = join(tmp.dir, 'result-path.json');
    const ch = await openDestination('ssh://admin@[::1]:22', {
      ssh: { env: env(), remoteCommand: [process.execPath, PEER, built.dir, 'receiver', 'xenmig', result] },
    });
    const g = new FakeGuest(1024 * 1024);
    const res = await senderHandshake(ch, g.sender());
    expect(res.outcome).toBe('handed-over');
    expect(JSON.parse(readFileSync(result, 'utf8')).sha).toBe(sha256(g.payload));
    expect(readFileSync(join(tmp.dir, 'argv.log'), 'utf8')).toContain('-p\n22\n-l\nadmin\n::1\n--\n');
  });

  it('ssh failing to connect surfaces as ChildExitError with its stderr; the handshake does not start', async () => {
    const ch = await sshChannel({ host: 'nowhere', sshCommand: [fakeSsh], env: env({ FAKE_SSH_FAIL: '1' }) });
    const g = new FakeGuest();
    const res = await senderHandshake(ch, g.sender(), { timeouts: { ready: 10_000 } });
    expect(res.outcome).toBe('not-started');
    expect(g.sourceRunning).toBe(true);
    await ch.closed;
    expect(ch.error).toBeInstanceOf(ChildExitError);
    expect((ch.error as ChildExitError).exitCode).toBe(255);
    expect(ch.error!.message).toContain('Permission denied');
  });

  it('a missing ssh program rejects at spawn', async () => {
    await expect(sshChannel({ host: 'h', sshCommand: [join(tmp.dir, 'no-such-ssh')] })).rejects.toThrow(
      /ENOENT/,
    );
  });

  it('builds the argv with quoting and refuses option-like hosts', () => {
    expect(sshArgv({ host: 'h', remoteCommand: ['xenmig', 'receive', '--name', "it's a vm"] })).toEqual([
      'ssh',
      '-T',
      '-o',
      'BatchMode=yes',
      'h',
      '--',
      `xenmig receive --name 'it'\\''s a vm'`,
    ]);
    expect(shellQuote('$(rm -rf /)')).toBe(`'$(rm -rf /)'`);
    expect(() => sshArgv({ host: '-oProxyCommand=evil' })).toThrow(TransportConfigError);
  });
});

describe('parseDestination', () => {
  const ok: Array<[string, unknown]> = [
    ['-', { kind: 'stdio' }],
    ['ssh://host', { kind: 'ssh', host: 'host' }],
    ['ssh://root@host.example:2222', { kind: 'ssh', host: 'host.example', user: 'root', port: 2222 }],
    ['ssh://[fe80::1]:22', { kind: 'ssh', host: 'fe80::1', port: 22 }],
    ['ssh://u@[::1]', { kind: 'ssh', host: '::1', user: 'u' }],
    ['tcp://10.0.0.2:8002', { kind: 'tcp', host: '10.0.0.2', port: 8002 }],
    ['tcp://[::1]:8002/', { kind: 'tcp', host: '::1', port: 8002 }],
    ['/var/lib/xen/save/vm1', { kind: 'file', path: '/var/lib/xen/save/vm1' }],
    ['vm1.save', { kind: 'file', path: 'vm1.save' }],
    ['file:///tmp/a%20b', { kind: 'file', path: '/tmp/a b' }],
  ];
  for (const [s, d] of ok) it(`parses ${s}`, () => expect(parseDestination(s)).toEqual(d));

  const bad = [
    '',
    'tcp://host',
    'tcp://host:0',
    'tcp://host:65536',
    'tcp://host:x',
    'tcp://u@host:1',
    'ssh://',
    'ssh://@host',
    'ssh://host/path',
    'ssh://fe80::1',
    'ssh://-oProxyCommand=x',
    'http://x',
    'file://relative',
    'ssh://[::1',
  ];
  for (const s of bad)
    it(`rejects ${JSON.stringify(s)}`, () => expect(() => parseDestination(s)).toThrow(TransportConfigError));
});
