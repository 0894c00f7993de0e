/* ctl_help.h — stockctl's help for people: the list of commands (stockctl --help) and a page
 * per command (stockctl help COMMAND, stockctl COMMAND --help). */
#ifndef STOCKCLIENT_CTL_HELP_H
#define STOCKCLIENT_CTL_HELP_H

#include <stdbool.h>
#include <stdio.h>

/* The text --help prints above the options: every command in one line, and the exit codes. */
extern const char ctl_help_summary[];

/* Prints one command's page to out: usage, arguments, the options it reads, what it prints
 * (table and --json) and its exit codes. Returns false, printing nothing, for a name that is
 * not a command. */
bool ctl_help_command(FILE *out, const char *command);

#endif
