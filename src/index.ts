// xenmig library entry point.
// Layers (each calls only the one below it; the libxc layer talks back only through callbacks):
//   cli -> api (this file's save/restore/migrate/receive) -> checkpoint (Remus, COLO)
//   -> disk (Remus disk replication) -> toolstack (libxl role; host selection in toolstack/host.ts) -> engine (libxc role) / netbuf
//   -> stream (records) / xen (hypervisor) / transport (channels, handshakes)
// test/structure/layers.test.ts checks that every import points down.
export * as stream from './stream/index.js';
export * as xen from './xen/index.js';
export * as transport from './transport/index.js';
export { save, restore, migrate, receive, openXen, mockBuilder } from './api.js';
export type {
  SaveOptions,
  SaveResult,
  RestoreOptions,
  RestoreResult,
  MigrateOptions,
  MigrateResult,
  ReceiveOptions,
  ReceiveResult,
  TransferOptions,
  XenOptions,
} from './api.js';
export { saveDomain, suspendDomain, resumeDomain } from './toolstack/save.js';
export { restoreDomain, type DomainBuilder } from './toolstack/restore.js';
export { parseDomainConfig, configFromDomain, type DomainConfig } from './toolstack/config.js';
export { resolveDomain } from './toolstack/names.js';
export { listDomains, type DomainListEntry } from './toolstack/list.js';
export { noEmulator, type EmulatorState, type EmulatorStateProvider } from './toolstack/emulator.js';
export { libxcSave } from './engine/save/save.js';
export { libxcRestore } from './engine/restore/restore.js';
export type { SaveCallbacks, SaveProgress, SaveStats, SaveOps, RoundStats } from './engine/save/types.js';
export type { RestoreCallbacks, RestoreStats, RestoreOps } from './engine/restore/types.js';
export {
  makePrecopyPolicy,
  defaultPrecopyPolicy,
  type PrecopyPolicy,
  type PrecopyStats,
  type PrecopyDecision,
} from './engine/policy.js';
export { MigrationError, MigrationErrorCode } from './engine/errors.js';
export {
  remus,
  receiveReplica,
  type RemusOptions,
  type RemusResult,
  type RemusHandle,
  type ReplicaOptions,
  type ReplicaResult,
  type CheckpointStat,
  type ReplicationHooks,
  type OutputComparator,
} from './checkpoint/index.js';
