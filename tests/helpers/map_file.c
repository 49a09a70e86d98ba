/*
 * Test helper: maps a file read-only (as a loaded model's weights are), says
 * "mapped" on stdout and sleeps until killed, so gc tests can check that a
 * mapped blob is never evicted. Usage: map_file PATH
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: map_file PATH\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        perror(argv[1]);
        return 1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    close(fd); /* the mapping keeps the file in use, as a model's does */
    printf("mapped\n");
    fflush(stdout);
    for (;;)
        pause();
}
