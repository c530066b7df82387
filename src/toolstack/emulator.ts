// Device-model (emulator) state: the libxl layer's EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT
// records. Pluggable: xenmig has no qemu of its own; PV and PVH guests have no device model.
import { EmulatorId } from '../stream/index.js';
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

/** Keeps state in memory: for tests and for scripting a device model from TypeScript. */
export class MemoryEmulator implements EmulatorStateProvider {
  readonly saved = new Map<number, EmulatorState>();
  readonly restored = new Map<number, EmulatorState>();
  constructor(private readonly produce?: (domid: number) => EmulatorState | null) {}
  async save(domid: number): Promise<EmulatorState | null> {
    const s = this.produce ? this.produce(domid) : (this.saved.get(domid) ?? null);
    return s;
  }
  async restore(domid: number, state: EmulatorState): Promise<void> {
    this.restored.set(domid, state);
  }
}

export const QEMU_UPSTREAM = EmulatorId.QEMU_UPSTREAM;
