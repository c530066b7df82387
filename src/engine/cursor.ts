// A pull cursor over a stream reader, shared by the libxc and toolstack layers of a restore (as the
// fd is shared in Xen: libxc reads its records, hands over at CHECKPOINT, libxl reads its own).
// Every item passes the stream validator before anyone acts on it.
import {
  StreamReader,
  StreamValidator,
  type ReaderOptions,
  type StreamInput,
  type StreamItem,
  type ValidatorOptions,
} from '../stream/index.js';
import { abortable } from './errors.js';

export class StreamCursor {
  readonly reader: StreamReader;
  readonly validator: StreamValidator;
  private readonly it: AsyncIterator<StreamItem>;
  private done = false;
  private pushedBack: StreamItem | null = null;
  private readonly signal: AbortSignal | undefined;

  /** `signal`: an abort ends a wait for the next item at once (with an ERR_ABORTED error). */
  constructor(
    input: StreamInput | StreamReader,
    opts: { reader?: ReaderOptions; validator?: ValidatorOptions; signal?: AbortSignal } = {},
  ) {
    this.signal = opts.signal;
    this.reader =
      input instanceof StreamReader ? input : new StreamReader(input, { lazyPageData: true, ...opts.reader });
    this.validator = new StreamValidator(opts.validator);
    this.it = this.reader[Symbol.asyncIterator]();
  }

  /** The next validated item, or null at the end of the input (END or EOF at a record boundary). */
  async next(): Promise<StreamItem | null> {
    if (this.pushedBack) {
      const p = this.pushedBack;
      this.pushedBack = null;
      return p;
    }
    if (this.done) return null;
    const r = await abortable(this.it.next(), this.signal);
    if (r.done) {
      this.done = true;
      return null;
    }
    this.validator.check(r.value);
    return r.value;
  }

  /** Give an item back (a layer read one record too far). Only one at a time. */
  unshift(item: StreamItem): void {
    if (this.pushedBack) throw new Error('StreamCursor: only one item can be pushed back');
    this.pushedBack = item;
  }

  /** Validator end-of-stream checks (missing END etc.). */
  finish() {
    return this.validator.finish(this.reader.summary);
  }

  async close(): Promise<void> {
    this.done = true;
    await this.it.return?.();
  }
}
