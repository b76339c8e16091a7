/**
 * The chunked upload routes (`{base_url}/lamin/api/uploads`), reached like every other
 * request of the extension: Jupyter's ServerConnection adds the token and the XSRF header.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ICommitted, IServerUpload, IUploadTransport, UploadError } from './uploadqueue';

export class RestUploads implements IUploadTransport {
  private readonly settings = ServerConnection.makeSettings();

  private url(route: string, query: Record<string, string | number> = {}): string {
    const base = URLExt.join(this.settings.baseUrl, 'lamin', 'api', route);
    const search = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)])).toString();
    return search ? `${base}?${search}` : base;
  }

  private async call<T>(method: string, url: string, init: RequestInit = {}): Promise<T> {
    // 'no-cache' rather than Jupyter's default 'no-store', which appends a cache-busting
    // parameter that the upload routes (strict about their query) refuse
    const request: RequestInit = { method, cache: 'no-cache', ...init };
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, request, this.settings);
    } catch (error) {
      if (init.signal?.aborted) {
        throw new UploadError(0, 'cancelled');
      }
      throw new UploadError(0, `the Jupyter server cannot be reached: ${error}`);
    }
    let data: any = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
      const received = data && typeof data.received === 'number' ? data.received : null;
      throw new UploadError(response.status, message, received, Boolean(data && data.retry));
    }
    return data as T;
  }

  async list(): Promise<IServerUpload[]> {
    const answer = await this.call<{ uploads: IServerUpload[] }>('GET', this.url('uploads'));
    return answer.uploads;
  }

  create(request: { name: string; size: number; key: string; instance: string | null }): Promise<IServerUpload> {
    const body: Record<string, unknown> = { name: request.name, size: request.size, key: request.key };
    if (request.instance) {
      body.instance = request.instance;
    }
    return this.call('POST', this.url('uploads'), { body: JSON.stringify(body) });
  }

  async put(id: string, offset: number, body: Blob, signal: AbortSignal): Promise<number> {
    const answer = await this.call<{ received: number }>(
      'PUT',
      this.url(`uploads/${encodeURIComponent(id)}`, { offset }),
      { body, signal, headers: { 'Content-Type': 'application/octet-stream' } }
    );
    return answer.received;
  }

  commit(id: string): Promise<ICommitted> {
    return this.call('POST', this.url(`uploads/${encodeURIComponent(id)}/commit`), { body: '{}' });
  }

  async remove(id: string): Promise<void> {
    await this.call('DELETE', this.url(`uploads/${encodeURIComponent(id)}`));
  }
}
