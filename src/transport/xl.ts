// xl's migrate handshake (`xl migrate` ⇄ `xl migrate-receive`), byte-exact, as a HandshakeWire.
//
// The four strings are those of tools/xl/xl.h in xen-project/xen (migrate_receiver_banner,
// migrate_receiver_ready, migrate_permission_to_go, migrate_report), used as in tools/xl/xl_migrate.c:
//   - the banner is sent WITHOUT its terminating NUL (sizeof - 1),
//   - the other three are sent WITH their terminating NUL (sizeof),
//   - the report is followed by one status byte: 0 = the receiver's copy runs; non-zero = it does
//     not, and the receiver then sends the "cleared to unpause" string back so the sender resumes.
// (These are the bytes xl 4.17 sends and expects; the real-Xen rig runs both directions against xl.)
//
// Sequence:   receiver → banner → sender;  sender → xl header + libxl stream → receiver;
//             receiver → READY_MSG → sender; sender renames its domain "<name>--migratedaway";
//             sender → PERMISSION_TO_GO → receiver; receiver renames + unpauses;
//             receiver → REPORT + status byte → sender;  [status ≠ 0: receiver destroys its copy,
//             receiver → PERMISSION_TO_GO → sender, sender renames back and resumes]
// xl has no DONE (the libxl stream ends with its END record) and no ERROR message.

import type { Channel } from './channel.js';
import { ProtocolError } from './errors.js';
import { readExactly, writeAll, type WaitOptions } from './io.js';
import type { HandshakeWire, PeerInfo } from './wire.js';

/** "xl migration receiver ready, send binary domain data.\n" — sent without NUL */
export const XL_MIGRATE_RECEIVER_BANNER = Buffer.from(
  'xl migration receiver ready, send binary domain data.\n',
  'latin1',
);
/** "domain received, ready to unpause" + NUL */
export const XL_MIGRATE_RECEIVER_READY = Buffer.from('domain received, ready to unpause\0', 'latin1');
/** "domain is yours, you are cleared to unpause" + NUL (both directions) */
export const XL_MIGRATE_PERMISSION_TO_GO = Buffer.from(
  'domain is yours, you are cleared to unpause\0',
  'latin1',
);
/** "my copy unpause results are as follows" + NUL, then one status byte */
export const XL_MIGRATE_REPORT = Buffer.from('my copy unpause results are as follows\0', 'latin1');

async function readFixed(ch: Channel, msg: Buffer, what: string, o: WaitOptions = {}): Promise<void> {
  const got = await readExactly(ch.readable, msg.length, { ...o, what });
  if (!got.equals(msg)) {
    throw new ProtocolError(
      'EBADMSG',
      `xl migration: unexpected data instead of ${what}: ${JSON.stringify(got.toString('latin1').slice(0, 60))}`,
    );
  }
}

/**
 * The status byte xl sends for an rc: `(char)-rc` (xl_migrate.c), so 0 stays 0, libxl's negative error
 * codes become small positive bytes (ERROR_FAIL -3 → 3) and xl's own rc 1 ("GO message not read")
 * becomes 0xff. A non-zero rc that would wrap to 0 is sent as 0xff.
 */
export function xlStatusByte(status: number): number {
  if (status === 0) return 0;
  const b = -status & 0xff;
  return b === 0 ? 0xff : b;
}

export function xlWire(ch: Channel): HandshakeWire {
  return {
    name: 'xl',
    sendReady: (o) =>
      writeAll(ch.writable, XL_MIGRATE_RECEIVER_BANNER, { ...o, what: 'sending the xl banner' }),
    async awaitReady(o): Promise<PeerInfo> {
      await readFixed(ch, XL_MIGRATE_RECEIVER_BANNER, 'the xl migration banner', o);
      return { protocol: 'xl', capabilities: [] };
    },
    sendDone: async () => undefined,
    awaitDone: async () => undefined,
    sendReceived: (o) =>
      writeAll(ch.writable, XL_MIGRATE_RECEIVER_READY, { ...o, what: 'sending the xl ready message' }),
    awaitReceived: (o) => readFixed(ch, XL_MIGRATE_RECEIVER_READY, 'the xl ready message', o),
    sendCleared: (o) =>
      writeAll(ch.writable, XL_MIGRATE_PERMISSION_TO_GO, { ...o, what: 'sending the xl GO message' }),
    awaitCleared: (o) => readFixed(ch, XL_MIGRATE_PERMISSION_TO_GO, 'the xl GO message', o),
    sendResult: (status, o) =>
      writeAll(ch.writable, Buffer.concat([XL_MIGRATE_REPORT, Buffer.from([xlStatusByte(status)])]), {
        ...o,
        what: 'sending the xl report',
      }),
    async awaitResult(o): Promise<number> {
      await readFixed(ch, XL_MIGRATE_REPORT, 'the xl success/failure report', o);
      const b = await readExactly(ch.readable, 1, { ...o, what: 'the xl success/failure status byte' });
      return b[0]!;
    },
    sendError: async () => undefined,
  };
}
