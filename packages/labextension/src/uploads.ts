/**
 * The Uploads view of the sidebar: files dropped on the sidebar or picked with its Upload
 * buttons, each with its progress (bytes, rate, time left) and Cancel; after a page reload
 * the unfinished uploads the server keeps are listed with Resume.
 */
import { clear, h } from './dom';
import { IPickedFile, pickedFiles, withPrefix } from './drop';
import { formatDuration, humanSize } from './format';
import { fraction, IUploadItem, secondsLeft, UploadQueue } from './uploadqueue';

const STATE_TEXT: Record<string, string> = {
  waiting: 'waiting',
  starting: 'starting',
  paused: 'paused: Resume and pick the same file (or drop it here again)',
  complete: 'all bytes on the Jupyter host, not saved yet',
  saving: 'saving to the instance…'
};

export class UploadsView {
  readonly node: HTMLElement;
  private readonly list: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly prefix: HTMLInputElement;
  private readonly cancelAllButton: HTMLButtonElement;
  private readonly clearButton: HTMLButtonElement;
  private readonly message: HTMLElement;
  private restored = false;
  private savedCount = 0;

  constructor(
    readonly queue: UploadQueue,
    /** The instance the sidebar shows: uploads are saved there. */
    private readonly instance: () => string | null,
    /** An upload was saved: the artifact list and the status bar refresh. */
    private readonly saved: () => void
  ) {
    const filesInput = this.picker(false);
    const folderInput = this.picker(true);
    this.prefix = h('input', {
      className: 'jp-mod-styled lamin-upload-prefix',
      placeholder: 'key prefix (optional)',
      'aria-label': 'key prefix of the uploads'
    });
    this.cancelAllButton = h(
      'button',
      { className: 'lamin-button jp-mod-warn lamin-upload-cancel-all', onClick: () => void this.queue.cancelAll() },
      'Cancel all'
    );
    this.clearButton = h(
      'button',
      { className: 'lamin-button lamin-upload-clear', onClick: () => this.queue.clearSaved() },
      'Clear saved'
    );
    this.summary = h('div', { className: 'lamin-summary lamin-upload-summary' });
    this.message = h('div', { className: 'lamin-message lamin-upload-message', role: 'status' });
    this.list = h('ul', { className: 'lamin-uploads-list' });
    this.node = h(
      'div',
      { className: 'lamin-uploads' },
      h(
        'div',
        { className: 'lamin-drop-hint' },
        'Drop files or folders from your desktop anywhere on this sidebar, or pick them: any size, sent in chunks, resumable after a page reload.'
      ),
      h(
        'div',
        { className: 'lamin-toolbar' },
        h('button', { className: 'lamin-button jp-mod-accept lamin-upload-files', onClick: () => filesInput.click() }, 'Upload files…'),
        h('button', { className: 'lamin-button lamin-upload-folder', onClick: () => folderInput.click() }, 'Upload folder…'),
        filesInput,
        folderInput
      ),
      this.prefix,
      h('div', { className: 'lamin-toolbar' }, this.summary, this.cancelAllButton, this.clearButton),
      this.message,
      this.list
    );
    this.queue.onChange(() => this.render());
    this.render();
  }

  /** Queue files: each is saved under the key prefix plus its name (or path in a folder). */
  add(files: IPickedFile[]): void {
    if (!files.length) {
      return;
    }
    this.say('');
    const prefix = this.prefix.value;
    const fresh: IPickedFile[] = [];
    for (const { file, key } of files) {
      const full = withPrefix(prefix, key);
      // the same file dropped again onto its paused upload goes on where it stopped
      const paused = this.queue.pausedFor(file, full);
      if (paused) {
        this.queue.resume(paused, file);
      } else {
        fresh.push({ file, key: full });
      }
    }
    if (fresh.length) {
      this.queue.add(fresh, this.instance());
    }
  }

  /** List the unfinished uploads the server keeps (once per page). */
  async restore(): Promise<void> {
    if (this.restored) {
      return;
    }
    this.restored = true;
    try {
      await this.queue.restore();
    } catch (error) {
      this.restored = false;
      this.say(`the unfinished uploads cannot be listed: ${error instanceof Error ? error.message : error}`, true);
    }
  }

  private picker(folder: boolean): HTMLInputElement {
    const input = h('input', {
      type: 'file',
      multiple: true,
      className: folder ? 'lamin-upload-folder-input' : 'lamin-upload-input',
      'aria-label': folder ? 'upload a folder' : 'upload files',
      hidden: true
    });
    if (folder) {
      input.setAttribute('webkitdirectory', '');
    }
    input.addEventListener('change', () => {
      const files = pickedFiles(input);
      input.value = '';
      this.add(files);
    });
    return input;
  }

  private say(text: string, bad = false): void {
    this.message.textContent = text;
    this.message.classList.toggle('lamin-error-text', bad);
  }

  private render(): void {
    const items = this.queue.items;
    const saved = items.filter(i => i.state === 'saved').length;
    if (saved > this.savedCount) {
      this.saved();
    }
    this.savedCount = saved;
    const open = items.filter(i => i.state !== 'saved');
    const total = open.reduce((sum, i) => sum + i.size, 0);
    const done = open.reduce((sum, i) => sum + i.received, 0);
    const todo = open.length ? `${open.length} to do (${humanSize(done)} of ${humanSize(total)})` : '';
    this.summary.textContent = !items.length
      ? 'No uploads.'
      : [todo, saved ? `${saved} saved` : ''].filter(Boolean).join(', ');
    this.cancelAllButton.hidden = !open.length;
    this.clearButton.hidden = !saved;
    clear(this.list, ...items.map(item => this.row(item)));
  }

  private row(item: IUploadItem): HTMLElement {
    const percent = Math.floor(100 * fraction(item));
    const level = item.state === 'failed' ? 'bad' : item.state === 'saved' ? 'ok' : 'busy';
    return h(
      'li',
      {
        className: `lamin-upload lamin-upload-${item.state}`,
        'data-state': item.state,
        'data-upload-id': item.id ?? undefined,
        'data-key': item.key
      },
      h('div', { className: 'lamin-upload-key', title: item.key }, item.key),
      h(
        'div',
        {
          className: `lamin-bar lamin-${level}`,
          role: 'progressbar',
          'aria-label': `upload of ${item.key}`,
          'aria-valuemin': 0,
          'aria-valuemax': 100,
          'aria-valuenow': percent,
          'data-received': item.received,
          'data-size': item.size
        },
        h('div', { className: 'lamin-bar-fill', style: `width: ${percent}%` })
      ),
      h(
        'div',
        { className: 'lamin-upload-line' },
        h('span', { className: `lamin-upload-state${level === 'bad' ? ' lamin-error-text' : ''}` }, this.describe(item, percent)),
        ...this.actions(item)
      )
    );
  }

  private describe(item: IUploadItem, percent: number): string {
    const bytes = `${humanSize(item.received)} of ${humanSize(item.size)} (${percent} %)`;
    switch (item.state) {
      case 'sending': {
        const left = secondsLeft(item);
        const rate = item.rate > 0 ? ` · ${humanSize(item.rate)}/s` : '';
        return `${bytes}${rate}${left !== null ? ` · ${formatDuration(left)} left` : ''}`;
      }
      case 'saved': {
        const uid = item.artifact ? ` (${item.artifact.uid})` : '';
        return `saved ${humanSize(item.size)}${uid}${item.deduplicated ? ', already in the instance' : ''}`;
      }
      case 'failed':
        return `${bytes} · failed: ${item.error}`;
      case 'paused':
        return `${bytes} · ${STATE_TEXT.paused}`;
      default:
        return `${bytes} · ${STATE_TEXT[item.state] ?? item.state}`;
    }
  }

  private actions(item: IUploadItem): HTMLElement[] {
    const buttons: HTMLElement[] = [];
    const complete = item.received === item.size && item.id !== null;
    if (item.state === 'paused' || (item.state === 'failed' && !complete)) {
      buttons.push(this.resumeButton(item));
    }
    if (item.state === 'complete' || (item.state === 'failed' && complete)) {
      buttons.push(
        h('button', { className: 'lamin-button jp-mod-accept lamin-upload-save', onClick: () => void this.queue.save(item) }, 'Save')
      );
    }
    if (item.state !== 'saving' && item.state !== 'saved') {
      buttons.push(
        h(
          'button',
          {
            className: 'lamin-button lamin-upload-cancel',
            'aria-label': `cancel the upload of ${item.key}`,
            onClick: () => void this.queue.cancel(item)
          },
          'Cancel'
        )
      );
    }
    return buttons;
  }

  /** Resume: with the file still in the page, at once; after a reload, pick it again. */
  private resumeButton(item: IUploadItem): HTMLElement {
    const resume = (file?: File) => {
      try {
        this.queue.resume(item, file);
        this.say('');
      } catch (error) {
        this.say(error instanceof Error ? error.message : String(error), true);
      }
    };
    const onClick = () => {
      if (item.file) {
        resume();
        return;
      }
      const input = h('input', { type: 'file', hidden: true, className: 'lamin-upload-resume-input' });
      input.addEventListener('change', () => {
        const file = input.files?.[0];
        input.remove();
        if (file) {
          resume(file);
        }
      });
      this.node.appendChild(input);
      input.click();
    };
    return h(
      'button',
      { className: 'lamin-button jp-mod-accept lamin-upload-resume', 'aria-label': `resume the upload of ${item.key}`, onClick },
      'Resume'
    );
  }
}
