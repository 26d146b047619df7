/* RELAY_DEBUG is 1 in the debug build (RELAY_DEBUG=1 at build time), 0 otherwise. */
#ifndef RELAY_DEBUG
#define RELAY_DEBUG 0
#endif
