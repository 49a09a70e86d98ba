/*
 * Test helper: maps FILE read-only (as a loaded model's weights are) after
 * dropping its pages from the page cache (so the pages it faults are charged
 * to the caller's cgroup), reads one byte of every page, prints "mapped N"
 * and sleeps until killed. store_gc.sh checks that a mapped blob is never
 * evicted; memory_mapped.sh that every tool counts mapped weights as in use.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: map_file FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        perror(argv[1]);
        return 1;
    }
    fsync(fd); /* dirty pages cannot be dropped: write them first */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    size_t size = (size_t)st.st_size;
    volatile const unsigned char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    unsigned sum = 0;
    for (size_t off = 0; off < size; off += 4096)
        sum += p[off];
    printf("mapped %zu (%u)\n", size, sum & 1u);
    fflush(stdout);
    for (;;)
        pause();
}
