/*
 * policy: decides what UPDATE removes. Pure decisions over the session's
 * message flags; never touches files.
 */
#ifndef POP3D_POLICY_H
#define POP3D_POLICY_H

#include <time.h>
#include "maildrop/maildrop.h"

/*
 * Set MSG_REMOVE on exactly the messages UPDATE must remove and clear it on
 * every other one. Today that is the messages the client marked with DELE.
 */
void policy_mark_update(struct maildrop *md, time_t now);

#endif
