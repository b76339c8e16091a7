/** One artifact: its fields, its versions, and what a user does with it. */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';

import { ApiError, IArtifact, IArtifactDetail, LaminApi } from './api';
import { clear, fields, h } from './dom';
import { humanSize, shortTime } from './format';

export interface IDetailActions {
  /** Put the load code into the active notebook; false when no notebook is open. */
  insertCode(artifact: IArtifact): boolean;
  /** The artifact moved in or out of the trash: lists must reload. */
  changed(): void;
  back(): void;
}

export class DetailView {
  readonly node: HTMLElement;
  private readonly body: HTMLElement;
  private readonly message: HTMLElement;
  detail: IArtifactDetail | null = null;

  constructor(
    private readonly api: LaminApi,
    private readonly actions: IDetailActions
  ) {
    const back = h(
      'button',
      { className: 'lamin-button lamin-back', onClick: () => actions.back() },
      '← Back to the list'
    );
    this.message = h('div', { className: 'lamin-message', role: 'status', 'aria-live': 'polite' });
    this.body = h('div', { className: 'lamin-detail-body' });
    this.node = h('div', { className: 'lamin-detail' }, back, this.message, this.body);
  }

  async show(uid: string): Promise<void> {
    this.say('');
    clear(this.body, h('div', { className: 'lamin-summary' }, 'loading…'));
    try {
      this.detail = await this.api.artifact(uid);
    } catch (error) {
      clear(this.body);
      this.say(error instanceof ApiError ? error.message : String(error), true);
      return;
    }
    this.render(this.detail);
  }

  private say(text: string, isError = false): void {
    this.message.textContent = text;
    this.message.classList.toggle('lamin-error-text', isError);
  }

  private render(detail: IArtifactDetail): void {
    const a = detail.artifact;
    const hash = a.hash ? `${a.hash_type}:${a.hash}` : '';
    const kind = a.otype || (a.suffix ? `file (${a.suffix})` : 'file');
    const buttons = h(
      'div',
      { className: 'lamin-actions' },
      h(
        'button',
        {
          className: 'lamin-button lamin-insert jp-mod-accept',
          title: 'Put code that loads this artifact into the active notebook cell',
          onClick: () => this.insert(a)
        },
        'Insert load code'
      ),
      h(
        'button',
        {
          className: 'lamin-button lamin-copy',
          onClick: () => {
            Clipboard.copyToSystem(a.uid);
            this.say(`copied ${a.uid}`);
          }
        },
        'Copy uid'
      ),
      a.is_trashed
        ? h(
            'button',
            { className: 'lamin-button lamin-restore', onClick: () => this.setTrashed(a, false) },
            'Restore…'
          )
        : h(
            'button',
            {
              className: 'lamin-button lamin-trash jp-mod-warn',
              onClick: () => this.setTrashed(a, true)
            },
            'Move to trash…'
          )
    );
    const versions = h(
      'ol',
      { className: 'lamin-versions', 'aria-label': 'Version history, newest first' },
      ...detail.versions.map(v =>
        h(
          'li',
          { className: v.uid === a.uid ? 'lamin-mod-current' : '' },
          h(
            'button',
            {
              className: 'lamin-link',
              'data-uid': v.uid,
              'aria-current': v.uid === a.uid ? 'true' : undefined,
              onClick: () => void this.show(v.uid)
            },
            `v${v.version}`
          ),
          ` ${humanSize(v.size)} · ${shortTime(v.created_at)} · ${v.created_by}`,
          v.is_latest ? ' · latest' : '',
          v.is_trashed ? ' · in the trash' : ''
        )
      )
    );
    clear(
      this.body,
      h('h3', { className: 'lamin-detail-title' }, a.key ?? '(no key)'),
      a.description ? h('p', { className: 'lamin-description' }, a.description) : null,
      buttons,
      fields([
        ['uid', h('code', {}, a.uid)],
        ['key', a.key ?? '—'],
        ['version', `${a.version}${a.is_latest ? ' (latest)' : ''}`],
        ['size', `${humanSize(a.size)} (${a.size ?? '?'} bytes)`],
        ['kind', kind],
        ['hash', h('code', { className: 'lamin-hash' }, hash)],
        ['created by', a.created_by],
        ['created at', `${shortTime(a.created_at)} UTC`],
        ['storage', a.storage],
        ['trash', a.is_trashed ? 'in the trash' : 'no']
      ]),
      h('h4', {}, `Versions (${detail.versions.length})`),
      versions
    );
  }

  private insert(artifact: IArtifact): void {
    if (this.actions.insertCode(artifact)) {
      this.say('load code inserted into the notebook');
    } else {
      this.say('open a notebook first: the code goes into its active cell', true);
    }
  }

  private async setTrashed(artifact: IArtifact, trashed: boolean): Promise<void> {
    const name = artifact.key ?? artifact.uid;
    const result = await showDialog({
      title: trashed ? 'Move to trash?' : 'Restore from the trash?',
      body: trashed
        ? `“${name}” (v${artifact.version}) will be hidden from ln.Artifact.filter and the sidebar. The object stays in storage; you can restore it from the Trash tab.`
        : `“${name}” (v${artifact.version}) will be visible again.`,
      buttons: [
        Dialog.cancelButton(),
        trashed
          ? Dialog.warnButton({ label: 'Move to trash' })
          : Dialog.okButton({ label: 'Restore' })
      ]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      this.detail = await this.api.setTrashed(artifact.uid, trashed);
    } catch (error) {
      this.say(error instanceof ApiError ? error.message : String(error), true);
      return;
    }
    this.render(this.detail);
    this.say(trashed ? `moved ${name} to the trash` : `restored ${name}`);
    this.actions.changed();
  }
}
