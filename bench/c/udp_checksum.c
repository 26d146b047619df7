/* What computing a frame's UDP checksum costs the worker on the AF_XDP path, which
 * `--xdp-checksum offload` leaves to the device (ext/xsk.h): ext/xsk.c's own
 * relay_xsk_udp_checksum over a 200-byte and a 1,200-byte SRTP packet with their UDP header,
 * built as setup.py builds the core (-O3), ns per checksum, the best of 7 runs.
 *   cc -O3 -Iext bench/c/udp_checksum.c ext/xsk.c -o /tmp/udp_checksum && /tmp/udp_checksum */
#include "xsk.h"

#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
    static uint8_t udp[2048];
    const unsigned sizes[] = {8 + 200, 8 + 1200};
    for (int i = 0; i < 2048; i++)
        udp[i] = (uint8_t)(i * 7);
    for (int s = 0; s < 2; s++) {
        double best = 1e9;
        for (int run = 0; run < 7; run++) {
            volatile uint16_t sink = 0;
            const int n = 2000000;
            double t = now();
            for (int i = 0; i < n; i++) {
                udp[8] = (uint8_t)i;    /* a packet that differs each time */
                sink ^= relay_xsk_udp_checksum((uint32_t)i, udp, sizes[s]);
            }
            double ns = (now() - t) / n * 1e9;
            if (ns < best)
                best = ns;
        }
        printf("%u-byte datagram: %.1f ns a checksum\n", sizes[s], best);
    }
    return 0;
}
