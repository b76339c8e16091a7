/**
 * The upload queue: files from the desktop sent to the Jupyter host in chunks
 * (`POST uploads`, `PUT uploads/{id}?offset=N` per chunk, `POST uploads/{id}/commit`), with
 * cancel and resume. Pure: the REST calls and the clock are passed in, so jest drives the
 * state machine with fake ones.
 *
 *   waiting ─► starting ─► sending ─► saving ─► saved
 *                 │           │  ▲        │
 *                 │           ▼  │        ▼
 *                 │        paused ◄── (page reload: the server still has the bytes)
 *                 ▼           │
 *               failed ◄──────┘  (a refused chunk or commit; Retry goes on from the server's offset)
 *
 * Cancel, from any state but `saving` and `saved`, removes the item and the staged bytes.
 */

export type UploadState =
  | 'waiting' // queued, nothing sent yet
  | 'starting' // POST uploads in flight
  | 'sending' // chunks in flight
  | 'paused' // the server holds a prefix; the file must be picked again (after a reload)
  | 'complete' // every byte is on the server, not saved yet
  | 'saving' // POST commit in flight
  | 'saved'
  | 'failed';

/** What the queue reads a file through (`File` in the browser). */
export interface IFileLike {
  readonly name: string;
  readonly size: number;
  slice(start: number, end: number): Blob;
}

/** An upload as the server describes it (`GET uploads/{id}`). */
export interface IServerUpload {
  id: string;
  name: string;
  size: number;
  received: number;
  state: string;
  key: string;
  chunk_size: number;
  instance?: string | null;
  artifact?: string | null;
}

export interface ICommitted {
  artifact: { uid: string; key: string | null };
  deduplicated: boolean;
}

/** A refusal of the server (or no answer at all: `status` 0). */
export class UploadError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** 409: the bytes the server holds (the next chunk starts there). */
    readonly received: number | null = null,
    /** 409: another request still holds the upload (an aborted one finishing): ask again. */
    readonly retry = false
  ) {
    super(message);
  }
}

/** The REST routes; each throws `UploadError` for anything but 2xx. */
export interface IUploadTransport {
  list(): Promise<IServerUpload[]>;
  create(request: { name: string; size: number; key: string; instance: string | null }): Promise<IServerUpload>;
  put(id: string, offset: number, body: Blob, signal: AbortSignal): Promise<number>;
  commit(id: string): Promise<ICommitted>;
  remove(id: string): Promise<void>;
}

export interface IQueueClock {
  now(): number; // milliseconds
  sleep(ms: number): Promise<void>;
}

export const realQueueClock: IQueueClock = {
  now: () => (typeof performance !== 'undefined' ? performance.now() : Date.now()),
  sleep: ms => new Promise(resolve => setTimeout(resolve, ms))
};

export interface IQueueOptions {
  /** Files sent side by side (small files of a folder go faster; one big file uses one). */
  parallel: number;
  /** Chunk size when the server names none. */
  chunkSize: number;
  /**
   * Chunks of one file in flight at once (default 1). Above 1, every chunk but the first
   * starts at a multiple of the chunk size, which the server accepts ahead of `received`.
   */
  inFlight?: number;
  /** Tries of a chunk that got no answer (the network), each after `retryMs * tries`. */
  networkTries: number;
  retryMs: number;
  /** Tries while an aborted request still holds the upload (409 with `retry`). */
  busyTries: number;
  busyMs: number;
}

export const DEFAULT_QUEUE: IQueueOptions = {
  parallel: 3,
  chunkSize: 32 * 2 ** 20,
  inFlight: 4,
  networkTries: 5,
  retryMs: 1000,
  busyTries: 100,
  busyMs: 300
};

export interface IUploadItem {
  /** Local id, stable for the page's lifetime. */
  readonly local: number;
  /** The server's id, once `POST uploads` answered. */
  id: string | null;
  name: string;
  key: string;
  size: number;
  received: number;
  state: UploadState;
  error: string | null;
  /** The file: null for an upload restored after a reload, until it is picked again. */
  file: IFileLike | null;
  instance: string | null;
  chunkSize: number;
  /** Bytes per second since this session of sending started (0 before the first chunk). */
  rate: number;
  artifact: ICommitted['artifact'] | null;
  deduplicated: boolean;
}

/** Seconds until the item is sent at its current rate (null: not known yet). */
export function secondsLeft(item: IUploadItem): number | null {
  if (item.state !== 'sending' || item.rate <= 0) {
    return null;
  }
  return (item.size - item.received) / item.rate;
}

export function fraction(item: IUploadItem): number {
  return item.size > 0 ? item.received / item.size : item.state === 'saved' ? 1 : 0;
}

interface ILive {
  controller: AbortController;
  startedAt: number;
  startBytes: number;
}

export class UploadQueue {
  private readonly entries: IUploadItem[] = [];
  private readonly live = new Map<number, ILive>();
  private readonly listeners = new Set<() => void>();
  private nextLocal = 1;
  private active = 0;

  constructor(
    private readonly transport: IUploadTransport,
    readonly options: IQueueOptions = DEFAULT_QUEUE,
    private readonly clock: IQueueClock = realQueueClock
  ) {}

  /** Every item still shown (cancelled ones are gone), oldest first. */
  get items(): readonly IUploadItem[] {
    return this.entries;
  }

  /** Called after every change of any item (a new state, a chunk sent). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Queue files; `key` is what each is saved under (its path inside a dropped folder). */
  add(files: { file: IFileLike; key: string }[], instance: string | null): IUploadItem[] {
    const added = files.map(({ file, key }) => {
      const item: IUploadItem = {
        local: this.nextLocal++,
        id: null,
        name: file.name,
        key,
        size: file.size,
        received: 0,
        state: 'waiting',
        error: null,
        file,
        instance,
        chunkSize: this.options.chunkSize,
        rate: 0,
        artifact: null,
        deduplicated: false
      };
      this.entries.push(item);
      return item;
    });
    this.changed();
    this.pump();
    return added;
  }

  /**
   * The unfinished uploads the server holds (after a page reload): listed as paused, or as
   * complete when every byte arrived. Those already shown are left as they are.
   */
  async restore(): Promise<IUploadItem[]> {
    const found = await this.transport.list();
    const known = new Set(this.entries.map(e => e.id));
    const restored: IUploadItem[] = [];
    for (const upload of found) {
      if (known.has(upload.id) || (upload.state !== 'receiving' && upload.state !== 'complete')) {
        continue;
      }
      const item: IUploadItem = {
        local: this.nextLocal++,
        id: upload.id,
        name: upload.name,
        key: upload.key,
        size: upload.size,
        received: upload.received,
        state: upload.received >= upload.size ? 'complete' : 'paused',
        error: null,
        file: null,
        instance: upload.instance ?? null,
        chunkSize: upload.chunk_size || this.options.chunkSize,
        rate: 0,
        artifact: null,
        deduplicated: false
      };
      this.entries.push(item);
      restored.push(item);
    }
    if (restored.length) {
      this.changed();
    }
    return restored;
  }

  /**
   * Go on with a paused or failed item; a restored one needs its file again (the same name
   * and size). Sending starts at the offset the server holds.
   */
  resume(item: IUploadItem, file?: IFileLike): void {
    if (item.state !== 'paused' && item.state !== 'failed') {
      return;
    }
    if (file) {
      if (file.name !== item.name || file.size !== item.size) {
        throw new UploadError(
          400,
          `${file.name} (${file.size} bytes) is not the file this upload started with: ${item.name} (${item.size} bytes)`
        );
      }
      item.file = file;
    }
    if (!item.file) {
      throw new UploadError(400, `pick ${item.name} again to resume its upload`);
    }
    item.error = null;
    item.state = 'waiting';
    this.changed();
    this.pump();
  }

  /** The paused upload this file (under this key) would resume, if any. */
  pausedFor(file: IFileLike, key: string): IUploadItem | undefined {
    return this.entries.find(
      e => e.state === 'paused' && e.key === key && e.name === file.name && e.size === file.size
    );
  }

  /** Save a complete item (restored after a reload, or whose commit failed). */
  save(item: IUploadItem): Promise<void> {
    if (item.state !== 'complete' && !(item.state === 'failed' && item.received === item.size)) {
      return Promise.resolve();
    }
    return this.commit(item);
  }

  /** Cancel: stop sending, drop the item, remove the staged bytes on the server. */
  async cancel(item: IUploadItem): Promise<void> {
    if (item.state === 'saving' || item.state === 'saved' || !this.entries.includes(item)) {
      return;
    }
    this.live.get(item.local)?.controller.abort();
    this.entries.splice(this.entries.indexOf(item), 1);
    this.changed();
    if (item.id !== null) {
      await this.removeOnServer(item);
    } // else: 'waiting' never reached the server; 'starting' is removed when POST answers
  }

  cancelAll(): Promise<void> {
    return Promise.all(this.entries.slice().map(item => this.cancel(item))).then(() => undefined);
  }

  /** Forget the saved items (the list shows what is left to do). */
  clearSaved(): void {
    const kept = this.entries.filter(e => e.state !== 'saved');
    this.entries.splice(0, this.entries.length, ...kept);
    this.changed();
  }

  private isCancelled(item: IUploadItem): boolean {
    return !this.entries.includes(item);
  }

  private async removeOnServer(item: IUploadItem): Promise<void> {
    try {
      await this.transport.remove(item.id as string);
    } catch (error) {
      if (error instanceof UploadError && error.status === 404) {
        return; // already gone
      }
      // shown again, so the user sees the bytes are still staged and can cancel again
      item.state = 'failed';
      item.error = `cancel failed, the staged bytes are still there: ${message(error)}`;
      this.entries.push(item);
      this.changed();
    }
  }

  private pump(): void {
    while (this.active < this.options.parallel) {
      const next = this.entries.find(e => e.state === 'waiting' && e.file);
      if (!next) {
        return;
      }
      this.active += 1;
      next.state = next.id === null ? 'starting' : 'sending';
      void this.run(next).finally(() => {
        this.active -= 1;
        this.pump();
      });
    }
  }

  private async run(item: IUploadItem): Promise<void> {
    try {
      if (item.id === null) {
        this.changed();
        const upload = await this.transport.create({
          name: item.name,
          size: item.size,
          key: item.key,
          instance: item.instance
        });
        item.id = upload.id;
        item.received = upload.received;
        item.chunkSize = upload.chunk_size || item.chunkSize;
        if (this.isCancelled(item)) {
          await this.removeOnServer(item); // cancelled while the server was answering
          return;
        }
        item.state = 'sending';
      }
      this.changed();
      await this.send(item);
      if (this.isCancelled(item)) {
        return;
      }
      item.state = 'complete';
      this.changed();
    } catch (error) {
      if (!this.isCancelled(item)) {
        this.fail(item, error);
      }
      return;
    }
    await this.commit(item);
  }

  private async send(item: IUploadItem): Promise<void> {
    const file = item.file as IFileLike;
    const live: ILive = {
      controller: new AbortController(),
      startedAt: this.clock.now(),
      startBytes: item.received
    };
    this.live.set(item.local, live);
    item.rate = 0;
    try {
      // a chunk refused for its offset (409 with the server's `received`): start again there
      while (item.received < item.size && !this.isCancelled(item)) {
        const restart = await this.sendFrom(item, file, live);
        if (restart === null) {
          return;
        }
        item.received = restart;
        this.changed();
      }
    } finally {
      this.live.delete(item.local);
    }
  }

  /**
   * Send from `item.received` to the end, `inFlight` chunks at once. Returns the server's
   * offset when it refused one (then the lanes stop after their current chunk), else null.
   */
  private async sendFrom(item: IUploadItem, file: IFileLike, live: ILive): Promise<number | null> {
    const lanes = Math.max(1, this.options.inFlight ?? 1);
    const chunk = item.chunkSize;
    let next = item.received;
    let restart: number | null = null;
    let stop = false;
    const take = (): [number, number] | null => {
      if (stop || restart !== null || next >= item.size || this.isCancelled(item)) {
        return null;
      }
      const offset = next;
      // in parallel the next chunk starts at a multiple of the chunk size (the server's rule)
      const end = Math.min(lanes > 1 ? (Math.floor(offset / chunk) + 1) * chunk : offset + chunk, item.size);
      next = end;
      return [offset, end];
    };
    const lane = async (): Promise<void> => {
      let range = take();
      while (range !== null) {
        const answer = await this.putChunk(item, file, live, range[0], range[1]);
        if (answer === null) {
          return; // cancelled
        }
        if ('conflict' in answer) {
          restart = restart === null ? answer.conflict : Math.min(restart, answer.conflict);
          return;
        }
        item.received = Math.max(item.received, answer.received);
        const seconds = (this.clock.now() - live.startedAt) / 1000;
        item.rate = seconds > 0 ? (item.received - live.startBytes) / seconds : 0;
        this.changed();
        range = take();
      }
    };
    let failure: { error: unknown } | null = null;
    await Promise.all(
      Array.from({ length: lanes }, () =>
        lane().catch(error => {
          stop = true; // the other lanes end after their current chunk
          failure = failure ?? { error };
        })
      )
    );
    if (failure !== null) {
      throw (failure as { error: unknown }).error;
    }
    return restart;
  }

  /** One chunk, tried again while the network fails or an older request holds the upload. */
  private async putChunk(
    item: IUploadItem,
    file: IFileLike,
    live: ILive,
    offset: number,
    end: number
  ): Promise<{ received: number } | { conflict: number } | null> {
    let networkTries = 0;
    let busyTries = 0;
    for (;;) {
      try {
        const received = await this.transport.put(item.id as string, offset, file.slice(offset, end), live.controller.signal);
        return this.isCancelled(item) ? null : { received };
      } catch (error) {
        if (this.isCancelled(item)) {
          return null;
        }
        if (error instanceof UploadError && error.status === 409 && error.received !== null) {
          return { conflict: error.received }; // the server's truth: go on from there
        }
        if (error instanceof UploadError && error.status === 409 && error.retry && busyTries < this.options.busyTries) {
          busyTries += 1;
          await this.clock.sleep(this.options.busyMs);
          continue;
        }
        if (error instanceof UploadError && error.status === 0 && networkTries < this.options.networkTries) {
          networkTries += 1;
          await this.clock.sleep(this.options.retryMs * networkTries);
          continue;
        }
        throw error;
      }
    }
  }

  private async commit(item: IUploadItem): Promise<void> {
    item.state = 'saving';
    item.error = null;
    this.changed();
    try {
      const saved = await this.transport.commit(item.id as string);
      item.artifact = saved.artifact;
      item.deduplicated = saved.deduplicated;
      item.state = 'saved';
      this.changed();
    } catch (error) {
      this.fail(item, error);
    }
  }

  private fail(item: IUploadItem, error: unknown): void {
    item.state = 'failed';
    item.error = message(error);
    this.changed();
  }

  private changed(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
