// Continuous replication: Remus (backup applies acknowledged checkpoints) and COLO (the secondary
// runs too). remus() is the primary, receiveReplica() the backup / secondary.
export { remus, type RemusOptions, type RemusResult, type RemusHandle } from './remus.js';
export { receiveReplica, type ReplicaOptions, type ReplicaResult } from './backup.js';
export { BackChannelDecoder, encodeDirtyPfns, encodeState, type BackRecord } from './backchannel.js';
export type { CheckpointStat, ReplicationHooks, OutputComparator, Logger } from './types.js';
