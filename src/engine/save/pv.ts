// x86 PV save operations (placeholder until the PV engine lands): refuses clearly.
import { MigrationError, MigrationErrorCode } from '../errors.js';
import type { SaveOps } from './types.js';

export function pvSaveOps(): SaveOps {
  throw new MigrationError(MigrationErrorCode.ERR_UNSUPPORTED, 'PV save is not implemented yet');
}
