/** A tiny DOM builder: the sidebar is plain DOM (fast to render, nothing to bundle). */

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | ((event: any) => void) | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      element.addEventListener(name.replace(/^on/, '').toLowerCase(), value);
    } else if (name === 'className') {
      element.className = String(value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element: HTMLElement, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    element.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

export function clear(element: HTMLElement, ...children: Child[]): void {
  element.textContent = '';
  append(element, children);
}

/** A small definition list: label / value rows. */
export function fields(rows: [string, Child][]): HTMLElement {
  const list = h('dl', { className: 'lamin-fields' });
  for (const [label, value] of rows) {
    list.appendChild(h('dt', {}, label));
    list.appendChild(h('dd', {}, value ?? ''));
  }
  return list;
}
