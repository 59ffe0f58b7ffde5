// The conversation log follows what is being written (a streaming answer, its sources, the
// thumbs under it) down to its last line, unless the reader scrolled up to read something
// earlier: then it stays where they are and a "Jump to latest" button offers the way back.

// Within this many pixels of the end counts as "at the end" (a rounding, a half line).
const NEAR_END_PX = 32;

/**
 * follow(log, jump) -> {keep(), stick()}: keep() scrolls to the end if the reader is following
 * (and otherwise shows the jump button); stick() scrolls to the end and follows again (the
 * reader sent a message, or asked to jump).
 */
export function createFollow(log, jump) {
  let following = true;
  // Where the page last scrolled to. A scroll event arrives a frame later, when the answer may
  // have grown again: only a position above this one is the reader's own move.
  let placedAt = 0;

  const atEnd = () => log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_END_PX;
  const toEnd = () => {
    log.scrollTop = log.scrollHeight;
    placedAt = log.scrollTop;
  };

  log.addEventListener(
    "scroll",
    () => {
      if (atEnd()) following = true;
      else if (log.scrollTop < placedAt - 1) following = false;
      if (following) jump.hidden = true;
    },
    { passive: true },
  );
  // The log changes height when the panels under it grow or shrink (hand-off, typing line).
  new ResizeObserver(() => {
    if (following) toEnd();
  }).observe(log);

  function stick() {
    following = true;
    jump.hidden = true;
    toEnd();
  }

  function keep() {
    if (following) {
      toEnd();
    } else if (!atEnd()) {
      jump.hidden = false;
    }
  }

  jump.addEventListener("click", () => {
    stick();
    // Keyboard users land on the composer, not on a button that just disappeared.
    const composer = document.getElementById("message");
    if (composer && !composer.disabled) composer.focus();
  });

  return { keep, stick };
}
