/**
 * Resumable uploads in the consistency view: `ln.uploads()` (`GET transfers`) with Resume and
 * Discard, as the notebook's consistency panel shows them. Which buttons an upload offers is
 * the core's rule (`can_resume`, `can_discard`); Resume runs on the server as a save job whose
 * progress shows below the list, Discard asks first, then aborts the upload.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';

import { ApiError, ISaveJob, ITransfer, LaminApi } from './api';
import { clear, h } from './dom';
import { humanSize, transferLine } from './format';
import { SavesView } from './saves';

export class TransfersView {
  readonly node: HTMLElement;
  private readonly header: HTMLElement;
  private readonly list: HTMLElement;
  private readonly message: HTMLElement;
  private readonly jobs: SavesView;
  transfers: ITransfer[] = [];

  constructor(
    private readonly api: LaminApi,
    /** A Resume or Discard changed the instance: the view checks again. */
    private readonly changed: () => void
  ) {
    this.header = h('h4', { className: 'lamin-transfers-header' });
    this.list = h('ul', { className: 'lamin-transfers-list', 'aria-label': 'Resumable uploads' });
    this.message = h('div', { className: 'lamin-transfers-message', role: 'status', 'aria-live': 'polite' });
    this.jobs = new SavesView(api, () => undefined, null);
    this.node = h(
      'section',
      { className: 'lamin-transfers', 'aria-label': 'Resumable uploads' },
      this.header,
      this.list,
      this.message,
      this.jobs.node
    );
    this.node.hidden = true;
  }

  async reload(): Promise<void> {
    try {
      this.transfers = (await this.api.transfers()).transfers;
    } catch (error) {
      this.say(`could not list the resumable uploads: ${text(error)}`, true);
      this.node.hidden = false;
      return;
    }
    const n = this.transfers.length;
    this.header.textContent = n ? `${n} resumable upload${n === 1 ? '' : 's'}` : '';
    this.header.hidden = !n;
    clear(this.list, ...this.transfers.map(t => this.row(t)));
    this.node.hidden = !n && !this.message.textContent && !this.jobs.node.querySelector('.lamin-job');
  }

  private row(t: ITransfer): HTMLElement {
    const name = t.key ?? t.uid;
    const resume = t.can_resume
      ? h(
          'button',
          {
            className: 'lamin-button jp-mod-accept lamin-transfer-resume',
            'aria-label': `resume the upload of ${name}`,
            title: `Save ${t.source} again: only the parts not yet in storage are sent`,
            onClick: () => void this.resume(t)
          },
          'Resume'
        )
      : null;
    const discard = t.can_discard
      ? h(
          'button',
          {
            className: 'lamin-button jp-mod-warn lamin-transfer-discard',
            'aria-label': `discard the upload of ${name}`,
            onClick: () => void this.discard(t)
          },
          'Discard'
        )
      : null;
    return h(
      'li',
      { className: 'lamin-transfer', 'data-uid': t.uid },
      h('span', { className: 'lamin-transfer-text' }, transferLine(t)),
      resume || discard ? h('span', { className: 'lamin-actions' }, resume, discard) : null
    );
  }

  private buttons(disabled: boolean): void {
    this.list.querySelectorAll('button').forEach(b => ((b as HTMLButtonElement).disabled = disabled));
  }

  async resume(t: ITransfer): Promise<void> {
    const name = t.key ?? t.uid;
    this.buttons(true);
    this.say(`resuming ${name}…`);
    let job: ISaveJob;
    try {
      job = await this.api.resumeTransfer(t.uid);
    } catch (error) {
      this.say(`${name}: ${text(error)}`, true);
      this.buttons(false);
      await this.reload();
      return;
    }
    this.node.hidden = false;
    const done = await this.jobs.track(job);
    if (done.status === 'done') {
      this.say(`saved ${name}`);
    } else {
      const failed = done.items.find(i => i.state === 'failed');
      this.say(`${name}: ${failed?.detail || done.error || done.summary || done.status}`, true);
    }
    this.changed();
  }

  async discard(t: ITransfer): Promise<void> {
    const name = t.key ?? t.uid;
    const result = await showDialog({
      title: 'Discard this upload?',
      body: `The ${humanSize(t.bytes_done)} of “${name}” already in storage are deleted and its pending row is removed. Saving the file again then starts from zero.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Discard' })]
    });
    if (!result.button.accept) {
      return;
    }
    this.buttons(true);
    try {
      const done = await this.api.discardTransfer(t.uid);
      this.say(`discarded ${name} (freed ${humanSize(done.freed_bytes)})`);
    } catch (error) {
      this.say(`${name}: ${text(error)}`, true);
      this.buttons(false);
    }
    this.changed();
  }

  private say(message: string, isError = false): void {
    this.message.textContent = message;
    this.message.classList.toggle('lamin-error-text', isError);
  }
}

function text(error: unknown): string {
  return error instanceof ApiError ? error.message : String(error);
}
