"""Imported only by the forkserver of `soberan.pool` (it is first in the preload list): the
forkserver dies with the process that started it. Importing it anywhere else would tie that
process's life to its parent's, so nothing else imports it."""

from soberan.pool import die_with_parent

die_with_parent()
