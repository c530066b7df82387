// Throwaway TLS material for the tests: EC P-256 keys and certificates made with the openssl CLI at
// test time in a scratch directory (never committed). The transport tests take the PEM text, the
// end-to-end tests the file paths of what this writes.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The paths of a certificate and its key. */
export interface PemFiles {
  cert: string;
  key: string;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA `name` in `dir` (name.crt, name.key); the certificate's path. */
export function makeCa(dir: string, name: string): string {
  const files = ['-keyout', `${name}.key`, '-out', `${name}.crt`];
  openssl(dir, ['req', '-x509', ...EC_KEY, ...files, '-subj', `/CN=${name}`, '-days', '2']);
  return join(dir, `${name}.crt`);
}

/**
 * A leaf certificate `name` signed by the CA `ca` of the same directory, for a server (valid for
 * localhost, 127.0.0.1 and ::1) or a client.
 */
export function makeLeaf(
  dir: string,
  name: string,
  ca: string,
  usage: 'serverAuth' | 'clientAuth',
): PemFiles {
  openssl(dir, ['req', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  writeFileSync(
    join(dir, `${name}.ext`),
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=${usage}\n` +
      (usage === 'serverAuth' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' : ''),
  );
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}
