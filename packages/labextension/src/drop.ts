/**
 * Files from the desktop: a drop (files and whole folders) or the Upload buttons' inputs.
 * Each file comes with the key it is saved under: its path inside the dropped folder.
 */

export interface IPickedFile {
  file: File;
  /** `name`, or `folder/sub/name` for a file inside a dropped or picked folder. */
  key: string;
}

/** Whether a drag carries files from the desktop (not a drag inside JupyterLab). */
export function carriesFiles(event: DragEvent): boolean {
  const types = event.dataTransfer?.types;
  return !!types && Array.prototype.indexOf.call(types, 'Files') >= 0;
}

/**
 * The files of a drop, folders walked. The drop's items are read at once: the browser
 * empties the DataTransfer when the event handler returns.
 */
export function droppedFiles(data: DataTransfer): Promise<IPickedFile[]> {
  const roots: Promise<IPickedFile[]>[] = [];
  const items = Array.from(data.items ?? []).filter(item => item.kind === 'file');
  if (!items.length) {
    return Promise.resolve(Array.from(data.files ?? []).map(file => ({ file, key: file.name })));
  }
  for (const item of items) {
    const entry = typeof item.webkitGetAsEntry === 'function' ? item.webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) {
      roots.push(walk(entry as FileSystemDirectoryEntry));
    } else {
      const file = item.getAsFile();
      if (file) {
        roots.push(Promise.resolve([{ file, key: file.name }]));
      }
    }
  }
  return Promise.all(roots).then(lists => ([] as IPickedFile[]).concat(...lists));
}

/** The files an `<input type=file>` picked (with `webkitdirectory`: a whole folder). */
export function pickedFiles(input: HTMLInputElement): IPickedFile[] {
  return Array.from(input.files ?? []).map(file => ({
    file,
    key: (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name
  }));
}

/** A key under an optional prefix: `runs/7` + `a.csv` -> `runs/7/a.csv`. */
export function withPrefix(prefix: string, key: string): string {
  const clean = prefix.trim().replace(/^\/+|\/+$/g, '');
  return clean ? `${clean}/${key}` : key;
}

async function walk(folder: FileSystemDirectoryEntry): Promise<IPickedFile[]> {
  const found: IPickedFile[] = [];
  const pending: FileSystemDirectoryEntry[] = [folder];
  while (pending.length) {
    const dir = pending.pop() as FileSystemDirectoryEntry;
    for (const entry of await readAll(dir)) {
      if (entry.isDirectory) {
        pending.push(entry as FileSystemDirectoryEntry);
      } else {
        const file = await new Promise<File>((resolve, reject) =>
          (entry as FileSystemFileEntry).file(resolve, reject)
        );
        found.push({ file, key: entry.fullPath.replace(/^\/+/, '') });
      }
    }
  }
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** readEntries answers in batches (100 in Chromium) until an empty one. */
async function readAll(dir: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = dir.createReader();
  const all: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) {
      return all;
    }
    all.push(...batch);
  }
}
