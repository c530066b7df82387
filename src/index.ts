// xenmig library entry point.
// Layers (each calls only the one below it; the libxc layer talks back only through callbacks):
//   api (this file's save/restore/migrate/receive) -> toolstack (libxl role) -> engine (libxc role)
//   -> stream (records) / xen (hypervisor) / transport (channels, handshakes)
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
export { noEmulator, MemoryEmulator, type EmulatorState, type EmulatorStateProvider } from './toolstack/emulator.js';
export { libxcSave } from './engine/save/save.js';
export { libxcRestore } from './engine/restore/restore.js';
export type { SaveCallbacks, SaveProgress, SaveStats, SaveOps, RoundStats } from './engine/save/types.js';
export type { RestoreCallbacks, RestoreStats, RestoreOps } from './engine/restore/types.js';
export { makePrecopyPolicy, defaultPrecopyPolicy, type PrecopyPolicy, type PrecopyStats, type PrecopyDecision } from './engine/policy.js';
export { MigrationError, MigrationErrorCode } from './engine/errors.js';
export { remus, receiveReplica, type RemusOptions, type RemusResult, type RemusHandle, type ReplicaOptions, type ReplicaResult, type CheckpointStat, type ReplicationHooks, type OutputComparator } from './checkpoint/index.js';
