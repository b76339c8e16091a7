/**
 * "Save to Lamin…": the dialog, and the Saves view with per-item progress of each save the
 * server runs (`POST saves`, then `GET saves/{id}` until it is done).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { ApiError, ISaveItem, ISaveJob, LaminApi } from './api';
import { h } from './dom';
import { humanSize } from './format';

const POLL_MS = 400;
const SHOWN_ITEMS = 500;
const FINAL = new Set(['saved', 'deduplicated', 'already saved', 'failed', 'rolled back']);

export interface ISaveRequest {
  keyPrefix: string;
  description: string;
  atomic: boolean;
}

class SaveForm extends Widget implements Dialog.IBodyWidget<ISaveRequest> {
  private readonly prefix: HTMLInputElement;
  private readonly description: HTMLInputElement;
  private readonly atomic: HTMLInputElement;

  constructor(paths: string[], instance: string) {
    super();
    this.addClass('lamin-save-form');
    this.prefix = h('input', {
      className: 'jp-mod-styled lamin-save-prefix',
      placeholder: 'e.g. runs/7 (optional)',
      'aria-label': 'key prefix'
    });
    this.description = h('input', {
      className: 'jp-mod-styled lamin-save-description',
      placeholder: 'optional',
      'aria-label': 'description'
    });
    this.atomic = h('input', { type: 'checkbox', className: 'lamin-save-atomic' });
    const shown = paths.length <= 5 ? paths.join(', ') : `${paths.slice(0, 5).join(', ')} and ${paths.length - 5} more`;
    this.node.append(
      h('p', {}, `Save ${shown} to the instance “${instance}”. Folders are saved with every file inside; a key is the prefix plus the file's name (and its path inside a folder).`),
      h('label', {}, 'Key prefix', this.prefix),
      h('label', {}, 'Description', this.description),
      h('label', { className: 'lamin-check-label' }, this.atomic, ' all or nothing (if one file fails, none is saved)')
    );
  }

  getValue(): ISaveRequest {
    return {
      keyPrefix: this.prefix.value.trim(),
      description: this.description.value.trim(),
      atomic: this.atomic.checked
    };
  }
}

export async function askSave(paths: string[], instance: string): Promise<ISaveRequest | null> {
  const form = new SaveForm(paths, instance);
  const result = await showDialog({
    title: 'Save to Lamin',
    body: form,
    focusNodeSelector: '.lamin-save-prefix',
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })]
  });
  return result.button.accept ? result.value : null;
}

export class SavesView {
  readonly node: HTMLElement;
  private readonly jobsBox: HTMLElement;
  private readonly nodes = new Map<string, HTMLElement>();

  constructor(
    private readonly api: LaminApi,
    private readonly finished: (job: ISaveJob) => void,
    intro: string | null = 'Right-click files or folders in the file browser and pick “Save to Lamin…”: each save shows here, file by file.'
  ) {
    this.jobsBox = h('div', { className: 'lamin-jobs' });
    this.node = h(
      'div',
      { className: 'lamin-saves' },
      intro ? h('div', { className: 'lamin-summary lamin-empty-saves' }, intro) : null,
      this.jobsBox
    );
  }

  /** Show a job the server already runs (a Resume) until it is done; its last state. */
  async track(job: ISaveJob): Promise<ISaveJob> {
    this.render(job);
    return this.follow(job);
  }

  async start(paths: string[], request: ISaveRequest): Promise<void> {
    let job: ISaveJob;
    try {
      job = await this.api.save(paths, request.keyPrefix, request.description, request.atomic);
    } catch (error) {
      const text = error instanceof ApiError ? error.message : String(error);
      this.jobsBox.prepend(h('div', { className: 'lamin-job lamin-bad', role: 'alert' }, `Save of ${paths.join(', ')} refused: ${text}`));
      return;
    }
    this.render(job);
    await this.follow(job);
  }

  private async follow(job: ISaveJob): Promise<ISaveJob> {
    while (job.status === 'queued' || job.status === 'running') {
      await new Promise(resolve => setTimeout(resolve, POLL_MS));
      try {
        job = await this.api.saveJob(job.id);
      } catch (error) {
        continue; // a dropped request: the job goes on on the server, ask again
      }
      this.render(job);
    }
    this.finished(job);
    return job;
  }

  private render(job: ISaveJob): void {
    const done = job.items.filter(i => FINAL.has(i.state)).length;
    const failed = job.items.filter(i => i.state === 'failed').length;
    const total = job.items.length;
    const percent = total ? Math.round((100 * done) / total) : job.status === 'done' ? 100 : 0;
    const level = failed || job.status === 'failed' ? 'bad' : job.status === 'done' ? 'ok' : 'busy';
    const headline =
      job.status === 'queued'
        ? 'queued'
        : job.status === 'running'
          ? `saving: ${done} of ${total} done`
          : job.summary || job.error || job.status;
    const items = job.items.slice(0, SHOWN_ITEMS).map(item => this.item(item));
    const node = h(
      'div',
      { className: `lamin-job lamin-job-${job.status}`, 'data-job': job.id },
      h('div', { className: 'lamin-job-title' }, `${job.resume_of ? 'resuming ' : ''}${job.paths.join(', ')} → ${job.instance}${job.key_prefix ? ` under ${job.key_prefix}/` : ''}${job.atomic ? ' (all or nothing)' : ''}`),
      h(
        'div',
        {
          className: `lamin-bar lamin-${level}`,
          role: 'progressbar',
          'aria-valuemin': 0,
          'aria-valuemax': 100,
          'aria-valuenow': percent
        },
        h('div', { className: 'lamin-bar-fill', style: `width: ${percent}%` })
      ),
      h('div', { className: `lamin-job-status${level === 'bad' ? ' lamin-error-text' : ''}` }, headline),
      job.error && job.status === 'failed' && !failed ? h('div', { className: 'lamin-error-text' }, job.error) : null,
      h('ul', { className: 'lamin-items' }, ...items),
      total > SHOWN_ITEMS ? h('div', { className: 'lamin-summary' }, `… and ${total - SHOWN_ITEMS} more`) : null
    );
    const old = this.nodes.get(job.id);
    if (old) {
      old.replaceWith(node);
    } else {
      this.jobsBox.prepend(node);
    }
    this.nodes.set(job.id, node);
  }

  private item(item: ISaveItem): HTMLElement {
    const state = item.state.replace(' ', '-');
    const progress =
      item.state === 'uploading' || item.state === 'hashing'
        ? ` ${humanSize(item.bytes)} / ${humanSize(item.size)}`
        : '';
    return h(
      'li',
      { className: `lamin-item lamin-item-${state}`, 'data-state': item.state },
      h('span', { className: 'lamin-item-label' }, item.label),
      h('span', { className: 'lamin-item-state' }, `${item.state}${progress}${item.detail ? `: ${item.detail}` : ''}`)
    );
  }
}
