/**
 * The status-bar item: `lamin ✓ 1,234` / `lamin ⚠ 2 pending` / `lamin ✗ 1 missing`.
 * It polls `GET status` (one grouped count query on the server plus the last full check,
 * which the server refreshes on its own slow timer), backs off on errors and pauses while
 * the page is hidden. A click opens the consistency view.
 */
import { Widget } from '@lumino/widgets';

import { ApiError, LaminApi } from './api';
import { IStatus, statusText } from './format';
import { DEFAULT_BACKOFF, IBackoffOptions, Poller, PollResult } from './poll';

export class LaminStatus extends Widget {
  readonly poller: Poller;
  last: IStatus | null = null;

  constructor(
    private readonly api: LaminApi,
    onClick: () => void,
    options: IBackoffOptions = DEFAULT_BACKOFF
  ) {
    super({ node: document.createElement('button') });
    this.addClass('lamin-status');
    this.addClass('jp-StatusBar-TextItem');
    this.node.setAttribute('type', 'button');
    this.node.textContent = 'lamin …';
    this.node.title = 'lamin_nb: loading';
    this.node.addEventListener('click', onClick);
    this.poller = new Poller(() => this.poll(), options);
  }

  private async poll(): Promise<PollResult> {
    try {
      this.last = await this.api.status();
    } catch (error) {
      const noInstance = error instanceof ApiError && error.status === 409;
      this.display('unknown', noInstance ? 'lamin –' : 'lamin ?', error instanceof Error ? error.message : String(error));
      if (noInstance) {
        return 'done'; // not a failure: nothing to back off from
      }
      throw error;
    }
    const shown = statusText(this.last);
    this.display(shown.level, shown.text, shown.title);
    // the server started a check for us: its result is worth fetching soon
    return this.last.check_running ? 'soon' : 'done';
  }

  private display(level: string, text: string, title: string): void {
    this.node.textContent = text;
    this.node.title = title;
    this.node.dataset.level = level;
    this.node.setAttribute('aria-label', title);
  }

  protected onAfterAttach(): void {
    this.poller.start();
  }

  protected onBeforeDetach(): void {
    this.poller.stop();
  }

  dispose(): void {
    this.poller.stop();
    super.dispose();
  }
}
