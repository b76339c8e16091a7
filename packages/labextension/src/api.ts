/**
 * The server extension's REST API (`{base_url}/lamin/api/`): token, cookie and XSRF are
 * handled by Jupyter's ServerConnection, as for every Jupyter request.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ICheckSummary, IStatus, ITransfer } from './format';

export class ApiError extends Error {
  constructor(
    public readonly status: number,
    message: string
  ) {
    super(message);
  }
}

export interface IInstanceInfo {
  name: string;
  uid: string;
  storage: string;
  storage_kind: 'local' | 's3';
  database: string;
  database_kind: 'sqlite' | 'postgresql';
}

export interface IInstanceResponse {
  instance: IInstanceInfo | null;
  default: string | null;
  known: string[];
  hint?: string;
  current_in_kernels?: string | null;
}

export interface IArtifact {
  uid: string;
  key: string | null;
  description: string | null;
  suffix: string;
  size: number | null;
  hash: string | null;
  hash_type: string | null;
  otype: string | null;
  version: number;
  is_latest: boolean;
  storage: string;
  created_at: string;
  created_by: string;
  status: string;
  is_trashed: boolean;
}

export interface IArtifactPage {
  instance: string;
  total: number;
  limit: number;
  offset: number;
  artifacts: IArtifact[];
}

export interface IArtifactDetail {
  instance: string;
  artifact: IArtifact;
  versions: IArtifact[];
}

export interface IIssue {
  name: string;
  key?: string | null;
  uid?: string;
  size?: number;
  kind?: string;
  expected?: string;
  actual?: string;
  expired?: boolean;
  owner?: string | null;
  age_seconds?: number;
}

export interface IReport {
  instance: string;
  storage: string;
  deep: boolean;
  checked_at: string;
  is_consistent: boolean;
  n_ok: number;
  n_rows: number;
  n_objects: number;
  missing: IIssue[];
  orphans: IIssue[];
  mismatched: IIssue[];
  pending: IIssue[];
  deleting: IIssue[];
  lost: IIssue[];
}

export interface IRepairAction {
  kind: string;
  target: string;
  detail: string;
  done: boolean;
  error: string | null;
}

export interface IRepairPlan {
  instance: string;
  summary: string;
  dry_run: boolean;
  applied: boolean;
  actions: IRepairAction[];
  skipped: IRepairAction[];
  after: IReport | null;
}

export interface ISaveItem {
  index: number;
  label: string;
  size: number | null;
  state: string;
  detail: string;
  bytes: number;
}

export interface ISaveJob {
  id: string;
  instance: string;
  paths: string[];
  key_prefix: string | null;
  atomic: boolean;
  /** The uid of the interrupted upload a Resume job saves again. */
  resume_of?: string | null;
  status: 'queued' | 'running' | 'done' | 'failed';
  summary: string;
  error: string | null;
  counts: Record<string, number>;
  items: ISaveItem[];
}

export interface ITransferList {
  instance: string;
  transfers: ITransfer[];
}

export interface IDiscarded {
  instance: string;
  uid: string;
  key: string | null;
  freed_bytes: number;
}

export type { ICheckSummary, IStatus, ITransfer };

type Query = Record<string, string | number | boolean | null | undefined>;

/** One place that knows how to reach the API; `instance` goes with every request. */
export class LaminApi {
  instance: string | null = null;
  private readonly settings = ServerConnection.makeSettings();

  url(path: string, query: Query = {}): string {
    const params = new URLSearchParams();
    const all: Query = { ...query, instance: this.instance };
    for (const [name, value] of Object.entries(all)) {
      if (value !== null && value !== undefined && value !== '') {
        params.set(name, String(value));
      }
    }
    const search = params.toString();
    const base = URLExt.join(this.settings.baseUrl, 'lamin', 'api', path);
    return search ? `${base}?${search}` : base;
  }

  async request<T>(path: string, query: Query = {}, body?: unknown): Promise<T> {
    const init: RequestInit =
      body === undefined ? { method: 'GET' } : { method: 'POST', body: JSON.stringify(body) };
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(path, query), init, this.settings);
    } catch (error) {
      throw new ApiError(0, `the Jupyter server cannot be reached: ${error}`);
    }
    let data: any = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data && (data.error || data.message)) || response.statusText;
      throw new ApiError(response.status, message);
    }
    return data as T;
  }

  instanceInfo(): Promise<IInstanceResponse> {
    return this.request('instance');
  }

  status(): Promise<IStatus> {
    return this.request('status');
  }

  artifacts(keyPrefix: string, offset: number, limit: number, trashed: boolean) {
    return this.request<IArtifactPage>('artifacts', {
      key_prefix: keyPrefix,
      offset,
      limit,
      trashed: trashed ? 'true' : undefined
    });
  }

  artifact(uid: string): Promise<IArtifactDetail> {
    return this.request(`artifacts/${encodeURIComponent(uid)}`);
  }

  setTrashed(uid: string, trashed: boolean): Promise<IArtifactDetail> {
    return this.request(`artifacts/${encodeURIComponent(uid)}/${trashed ? 'trash' : 'restore'}`, {}, {});
  }

  check(deep: boolean): Promise<IReport> {
    return this.request('consistency', { deep: deep ? 'true' : 'false' });
  }

  repair(apply: boolean, graceSeconds: number, markLost: boolean): Promise<IRepairPlan> {
    return this.request('repair', {}, { apply, grace_seconds: graceSeconds, mark_lost: markLost });
  }

  save(paths: string[], keyPrefix: string, description: string, atomic: boolean): Promise<ISaveJob> {
    return this.request(
      'saves',
      {},
      { paths, key_prefix: keyPrefix || null, description: description || null, atomic }
    );
  }

  saveJob(id: string): Promise<ISaveJob> {
    return this.request(`saves/${encodeURIComponent(id)}`);
  }

  /** `ln.uploads()`: the large uploads started and not finished (not the browser's `uploads`). */
  transfers(): Promise<ITransferList> {
    return this.request('transfers');
  }

  /** Save the upload's source again as a server-side job: only the missing parts are sent. */
  resumeTransfer(uid: string): Promise<ISaveJob> {
    return this.request(`transfers/${encodeURIComponent(uid)}/resume`, {}, {});
  }

  discardTransfer(uid: string): Promise<IDiscarded> {
    return this.request(`transfers/${encodeURIComponent(uid)}/discard`, {}, {});
  }
}
