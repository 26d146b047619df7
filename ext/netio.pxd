# The system calls of the media path (Linux): recvmmsg and sendmmsg, and what they take; and
# for connected per-receiver sockets (connected.pxi) socket, bind, connect, send and epoll.

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "<sys/types.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef long ssize_t


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len


cdef extern from "<netinet/in.h>" nogil:
    ctypedef uint16_t sa_family_t
    ctypedef uint16_t in_port_t
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        in_port_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        in_port_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    struct in_pktinfo:             # IP_PKTINFO: a datagram's local address (Linux)
        int ipi_ifindex
        in_addr ipi_spec_dst
        in_addr ipi_addr
    enum:
        IPPROTO_IP
        IP_PKTINFO
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    ctypedef int clockid_t
    enum:
        CLOCK_REALTIME
    int clock_gettime(clockid_t clock, timespec* t)


cdef extern from "<sys/socket.h>" nogil:
    enum:
        AF_INET
        AF_INET6
        MSG_DONTWAIT
        MSG_WAITFORONE
        MSG_TRUNC
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr* CMSG_FIRSTHDR(msghdr* m)
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)
    size_t CMSG_SPACE(size_t n)
    size_t CMSG_LEN(size_t n)
    int recvmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags, timespec* timeout)
    int sendmmsg(int fd, mmsghdr* vec, unsigned int vlen, int flags)
    enum:
        SOCK_DGRAM
        SOCK_CLOEXEC
        SOL_SOCKET
        SO_REUSEPORT
        SO_TIMESTAMPNS          # the kernel's receive time of each datagram, as a timespec
        SCM_TIMESTAMPNS         # its control message (socket(7))
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t length)
    int bind(int fd, const sockaddr* address, socklen_t length)
    int connect(int fd, const sockaddr* address, socklen_t length)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t sendmsg(int fd, const msghdr* msg, int flags)


cdef extern from "<netinet/udp.h>" nogil:
    enum:
        SOL_UDP
        UDP_SEGMENT             # UDP GSO: the size of each segment (Linux 4.18)


cdef extern from "<unistd.h>" nogil:
    int close(int fd)


cdef extern from "<sys/epoll.h>" nogil:
    enum:
        EPOLLIN
        EPOLL_CLOEXEC
        EPOLL_CTL_ADD
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EWOULDBLOCK
        EINTR
        EIO
        EINVAL
