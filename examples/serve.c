/*
 * serve.c: the OpenAI-compatible server embedded in a program, through libnuri's public API only.
 *
 *   cc serve.c $(pkg-config --cflags --libs nuri) -o serve
 *   ./serve MODEL.gguf
 *
 * Starts the server on a free loopback port, waits for the model, sends it one chat completion
 * request over a plain socket, prints the HTTP answer, and stops the server.
 */
#include <nuri.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One request to 127.0.0.1:port (Connection: close); prints the whole answer. */
static int ask(int port, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("serve: connect");
        if (fd >= 0) close(fd);
        return 1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     strlen(body), body);
    if (write(fd, req, (size_t)n) != n) {
        perror("serve: write");
        close(fd);
        return 1;
    }
    char buf[4096];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)got, stdout);
    printf("\n");
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    nuri_server_params p;
    nuri_server_params_init(&p, sizeof p);
    p.model_path = argv[1];
    p.model_name = "example";
    p.port = 0; // any free port
    p.n_ctx = 1024;
    nuri_server *server;
    if (nuri_server_start(&p, &server) != NURI_OK) {
        fprintf(stderr, "serve: %s\n", nuri_last_error());
        return 1;
    }
    int port = nuri_server_port(server);
    fprintf(stderr, "serving on 127.0.0.1:%d\n", port);
    int rc = 1;
    if (nuri_server_wait_loaded(server) != NURI_OK)
        fprintf(stderr, "serve: %s\n", nuri_last_error());
    else
        rc = ask(port, "{\"model\": \"example\", \"messages\": [{\"role\": \"user\", \"content\": "
                       "\"hello\"}], \"max_tokens\": 8, \"temperature\": 0}");
    nuri_server_stop(server);
    return rc;
}
