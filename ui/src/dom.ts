// Small DOM helpers: the page is static HTML (ui/index.html) that these fill in.

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id)
  if (el === null) throw new Error(`the page has no #${id}`)
  return el as T
}

export function setText(id: string, text: string): void {
  byId(id).textContent = text
}

/** An in-place error under the control that caused it ('' clears it). */
export function showError(id: string, message: string): void {
  const el = byId(id)
  el.textContent = message
  el.hidden = message === ''
}

/** Runs `call` with every control inside `scope` disabled, so nothing can be submitted twice or
 * alongside it (a second Bootstrap racing the first, a Finish mid-onboard). A disabled fieldset
 * disables its descendants without touching their own `disabled`, so what the call decides
 * about a control (the confirm button after an inspection) survives. Errors land in `errorId`. */
export async function inFlight(
  scope: HTMLFieldSetElement,
  errorId: string,
  call: () => Promise<void>,
): Promise<boolean> {
  scope.disabled = true
  scope.setAttribute('aria-busy', 'true')
  showError(errorId, '')
  try {
    await call()
    return true
  } catch (err) {
    showError(errorId, err instanceof Error ? err.message : String(err))
    return false
  } finally {
    scope.disabled = false
    scope.removeAttribute('aria-busy')
  }
}

/** Copies the text of the element a `[data-copy]` button names, and says so next to it. The
 * Clipboard API needs a secure context; a plain-HTTP onboarding page falls back to selecting
 * the text so the operator can copy it by hand, and says that instead. */
async function copyFrom(button: HTMLButtonElement): Promise<void> {
  const target = byId(button.dataset.copy ?? '')
  const text = target.textContent ?? ''
  const status = button.nextElementSibling instanceof HTMLElement ? button.nextElementSibling : null
  const say = (msg: string) => {
    if (status !== null) status.textContent = msg
  }
  try {
    await navigator.clipboard.writeText(text)
    say('Copied')
  } catch {
    const range = document.createRange()
    range.selectNodeContents(target)
    const sel = window.getSelection()
    sel?.removeAllRanges()
    sel?.addRange(range)
    say('Selected: press Ctrl+C to copy')
  }
}

export function wireCopyButtons(root: ParentNode): void {
  for (const b of root.querySelectorAll<HTMLButtonElement>('button[data-copy]')) {
    b.addEventListener('click', () => {
      copyFrom(b)
    })
  }
}

/** A definition list row: `<dt>label</dt><dd><code id>value</code> [copy]</dd>`. */
export function fieldRow(
  list: HTMLElement,
  label: string,
  id: string,
  value: string,
  copy = false,
): void {
  const dt = document.createElement('dt')
  dt.textContent = label
  const dd = document.createElement('dd')
  const code = document.createElement('code')
  code.id = id
  code.textContent = value
  dd.append(code)
  if (copy && value !== '') dd.append(' ', copyButton(id, label))
  list.append(dt, dd)
}

export function copyButton(targetId: string, what: string): DocumentFragment {
  const frag = document.createDocumentFragment()
  const b = document.createElement('button')
  b.type = 'button'
  b.className = 'copy'
  b.dataset.copy = targetId
  b.textContent = 'Copy'
  b.setAttribute('aria-label', `Copy ${what}`)
  b.addEventListener('click', () => {
    copyFrom(b)
  })
  const status = document.createElement('span')
  status.className = 'copied'
  status.setAttribute('role', 'status')
  frag.append(b, status)
  return frag
}
