/*
 * template_vars.c: the variables a chat template sees, assembled the way transformers'
 * apply_chat_template assembles them (see template.h).
 */
#include "chat/template.h"

const char *const nuri_template_roles[] = {"system",    "developer", "user",
                                           "assistant", "tool",      NULL};

json_t *nuri_template_vars(json_t *messages, json_t *tools, int add_generation_prompt,
                           const char *bos_token, const char *eos_token, json_t *extra)
{
    if (extra && !json_is_object(extra)) return NULL;
    json_t *v = json_object();
    if (!v) return NULL;
    int bad = 0;
    bad |= json_object_set(v, "messages", messages ? messages : json_null());
    bad |= json_object_set(v, "tools", tools ? tools : json_null());
    bad |= json_object_set_new(v, "documents", json_null());
    bad |= json_object_set_new(v, "add_generation_prompt", json_boolean(add_generation_prompt));
    if (bos_token) bad |= json_object_set_new(v, "bos_token", json_string(bos_token));
    if (eos_token) bad |= json_object_set_new(v, "eos_token", json_string(eos_token));
    if (extra) bad |= json_object_update(v, extra);
    if (bad) {
        json_decref(v);
        return NULL;
    }
    return v;
}
