// Device-model (emulator) state: the libxl layer's EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT
// records. Pluggable: xenmig has no qemu of its own; PV and PVH guests have no device model.
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';

export interface EmulatorState {
  /** 0 unknown, 1 qemu-traditional, 2 qemu-upstream */
  emulatorId: number;
  index: number;
  /** physmap entries etc., keys relative to the device-model xenstore directory */
  xenstore?: [string, string][];
  /** the device model's saved state blob */
  context?: Uint8Array;
}

export interface EmulatorStateProvider {
  /**
   * Capture the device model's state while the guest is suspended (the device model stops);
   * null = no device model. `live`: for a migration (the guest goes on elsewhere), not a snapshot.
   */
  save(domid: number, opts?: { live?: boolean }): Promise<EmulatorState | null>;
  /** Hand restored state to the destination's device model. */
  restore(domid: number, state: EmulatorState): Promise<void>;
  /** The source runs again after save() (a failed migration, --keep-running, a checkpoint). */
  resume?(domid: number): Promise<void>;
  /** The device model marks what it writes into guest memory in the dirty log (libxc's switch_qemu_logdirty). */
  switchLogdirty?(domid: number, enable: boolean): Promise<void>;
}

/** No device model (PV, PVH, and mock guests unless a test plugs one in). */
export const noEmulator: EmulatorStateProvider = {
  save: async () => null,
  restore: async (domid) => {
    throw new MigrationError(
      MigrationErrorCode.ERR_UNSUPPORTED,
      `emulator records received for domain ${domid} but no device model provider is configured (a full HVM guest needs an EmulatorStateProvider)`,
      { domid },
    );
  },
};
