// The transport layer: migration channels (file, fd, stdio, ssh, TCP/TLS), the xenmig control
// protocol, and the migration handshakes (xenmig's own and xl's). See channel.ts for the model.

export * from './errors.js';
export { readExactly, writeAll, endWritable, type WaitOptions } from './io.js';
export {
  Channel,
  emptyReadable,
  refusingWritable,
  type ChannelInit,
  type ChannelKind,
  type ChannelRole,
  type CloseOptions,
  type StreamSource,
} from './channel.js';
export {
  fdChannel,
  fileChannel,
  stdioChannel,
  readableFromFd,
  writableFromFd,
  type FdChannelOptions,
  type FileChannelOptions,
  type FdStreamOptions,
} from './fd.js';
export {
  sshChannel,
  spawnChannel,
  sshArgv,
  shellQuote,
  type SshOptions,
  type SpawnChannelOptions,
} from './ssh.js';
export {
  connectTcp,
  listen,
  MigrationListener,
  TLS_HELLO,
  PLAIN_HELLO,
  type ConnectOptions,
  type ListenOptions,
  type ListenerStats,
  type TlsMaterial,
  type TcpCommonOptions,
  type TcpSecurityOptions,
} from './tcp.js';
export { parseDestination, openDestination, type Destination, type OpenOptions } from './destination.js';
export * from './control.js';
export type { HandshakeWire, PeerInfo, WireFactory } from './wire.js';
export {
  XL_MIGRATE_RECEIVER_BANNER,
  XL_MIGRATE_RECEIVER_READY,
  XL_MIGRATE_PERMISSION_TO_GO,
  XL_MIGRATE_REPORT,
  xlStatusByte,
  xlWire,
} from './xl.js';
export {
  senderHandshake,
  receiverHandshake,
  xenmigWire,
  DEFAULT_HANDSHAKE_TIMEOUTS,
  STATUS_NOT_CLEARED,
  STATUS_UNPAUSE_FAILED,
  type HandshakeOptions,
  type HandshakeProtocol,
  type HandshakeTimeouts,
  type SenderCallbacks,
  type SenderResult,
  type SenderOutcome,
  type SenderStep,
  type ReceiverCallbacks,
  type ReceiverResult,
  type ReceiverOutcome,
  type ReceiverStep,
} from './handshake.js';
