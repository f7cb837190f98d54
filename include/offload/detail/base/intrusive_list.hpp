// offload/detail/base/intrusive_list.hpp — a doubly linked FIFO list of nodes that
// live inside awaiters. Waiting on a primitive therefore allocates nothing,
// and a cancelled waiter unlinks itself in O(1).
#pragma once

namespace offload::detail {

struct list_hook {
    list_hook* prev = nullptr;
    list_hook* next = nullptr;
    bool linked() const noexcept { return prev != nullptr; }
    /// Leaves whatever list holds this node (a no-op when unlinked).
    void unlink() noexcept {
        if (!linked()) return;
        prev->next = next;
        next->prev = prev;
        prev = next = nullptr;
    }
};

template <class T> // T derives from list_hook
class intrusive_list {
public:
    intrusive_list() noexcept { head_.prev = head_.next = &head_; }
    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;

    bool empty() const noexcept { return head_.next == &head_; }
    T* front() const noexcept { return empty() ? nullptr : static_cast<T*>(head_.next); }

    void push_back(T* n) noexcept {
        list_hook* h = n;
        h->prev = head_.prev;
        h->next = &head_;
        head_.prev->next = h;
        head_.prev = h;
    }

    static void erase(T* n) noexcept { static_cast<list_hook*>(n)->unlink(); }

    T* pop_front() noexcept {
        T* n = front();
        if (n) erase(n);
        return n;
    }

    /// Unlinks every node (their owners may then be destroyed independently).
    void clear() noexcept {
        while (pop_front()) {
        }
    }

    /// Calls f(T*) on each node; f may erase the node it is given.
    template <class F>
    void for_each(F&& f) {
        for (list_hook* h = head_.next; h != &head_;) {
            list_hook* next = h->next;
            f(static_cast<T*>(h));
            h = next;
        }
    }

private:
    list_hook head_;
};

} // namespace offload::detail
