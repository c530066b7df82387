// x86 PV restore operations (placeholder until the PV engine lands): refuses clearly.
import { MigrationError, MigrationErrorCode } from '../errors.js';
import type { RestoreOps } from './types.js';

export function pvRestoreOps(): RestoreOps {
  throw new MigrationError(MigrationErrorCode.ERR_UNSUPPORTED, 'PV restore is not implemented yet');
}
