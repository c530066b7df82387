// Network output buffering for Remus (see buffer.ts): the backends, their netlink messages.
export {
  openNetBuffer,
  createNetBuffer,
  AutoNetBuffer,
  vifInterfaces,
  PlugNetBuffer,
  NfqueueNetBuffer,
  NetBufferError,
  NetBufferErrorCode,
  type NetBuffer,
  type NetBufferBackend,
  type NetBufferOptions,
} from './buffer.js';
export * as messages from './messages.js';
