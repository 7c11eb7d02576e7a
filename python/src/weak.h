/*
 * weak.h - the parts of the C API that are still being written.
 *
 * libshmkit's lists, locks, typed objects and lifecycle are developed in
 * parallel with this extension. Their functions are referenced weakly, so
 * the extension loads against a library that does not define them yet; a
 * binding checks EXT_HAVE(fn) and raises NotImplementedError when the
 * function is missing. Once the library provides them all, this file can
 * go.
 */
#ifndef SHMKIT_PY_WEAK_H
#define SHMKIT_PY_WEAK_H

#pragma weak shmkit_array_attach
#pragma weak shmkit_array_attach_as
#pragma weak shmkit_array_block
#pragma weak shmkit_array_close
#pragma weak shmkit_array_compare_exchange
#pragma weak shmkit_array_create
#pragma weak shmkit_array_data
#pragma weak shmkit_array_fetch_add
#pragma weak shmkit_array_info_of
#pragma weak shmkit_array_itemsize
#pragma weak shmkit_array_length
#pragma weak shmkit_array_load
#pragma weak shmkit_array_lock
#pragma weak shmkit_array_nbytes
#pragma weak shmkit_array_ndim
#pragma weak shmkit_array_parse
#pragma weak shmkit_array_shape
#pragma weak shmkit_array_store
#pragma weak shmkit_array_typecode
#pragma weak shmkit_array_unlink
#pragma weak shmkit_array_view
#pragma weak shmkit_cond_broadcast
#pragma weak shmkit_cond_destroy
#pragma weak shmkit_cond_init
#pragma weak shmkit_cond_signal
#pragma weak shmkit_cond_timedwait
#pragma weak shmkit_cond_wait
#pragma weak shmkit_deadline
#pragma weak shmkit_gc
#pragma weak shmkit_item_equal
#pragma weak shmkit_item_str
#pragma weak shmkit_lifecycle_describe
#pragma weak shmkit_list_attach
#pragma weak shmkit_list_block
#pragma weak shmkit_list_capacity
#pragma weak shmkit_list_close
#pragma weak shmkit_list_count
#pragma weak shmkit_list_create
#pragma weak shmkit_list_format
#pragma weak shmkit_list_get
#pragma weak shmkit_list_index
#pragma weak shmkit_list_len
#pragma weak shmkit_list_lock
#pragma weak shmkit_list_open_block
#pragma weak shmkit_list_set
#pragma weak shmkit_list_unlink
#pragma weak shmkit_list_unlock
#pragma weak shmkit_lock_attach
#pragma weak shmkit_lock_block
#pragma weak shmkit_lock_close
#pragma weak shmkit_lock_cond
#pragma weak shmkit_lock_create
#pragma weak shmkit_lock_mutex
#pragma weak shmkit_lock_parse
#pragma weak shmkit_lock_unlink
#pragma weak shmkit_manager_close
#pragma weak shmkit_manager_connect
#pragma weak shmkit_manager_create_block
#pragma weak shmkit_manager_list
#pragma weak shmkit_manager_list_free
#pragma weak shmkit_manager_pid
#pragma weak shmkit_manager_release
#pragma weak shmkit_manager_serve
#pragma weak shmkit_manager_shutdown
#pragma weak shmkit_manager_socket
#pragma weak shmkit_manager_start
#pragma weak shmkit_mutex_consistent
#pragma weak shmkit_mutex_destroy
#pragma weak shmkit_mutex_held
#pragma weak shmkit_mutex_init
#pragma weak shmkit_mutex_inspect
#pragma weak shmkit_mutex_is_recursive
#pragma weak shmkit_mutex_lock
#pragma weak shmkit_mutex_timedlock
#pragma weak shmkit_mutex_trylock
#pragma weak shmkit_mutex_unlock
#pragma weak shmkit_runtime_dir
#pragma weak shmkit_track_fd
#pragma weak shmkit_track_pid
#pragma weak shmkit_track_start
#pragma weak shmkit_type_name
#pragma weak shmkit_typecode_format
#pragma weak shmkit_typecode_is_integer
#pragma weak shmkit_typecode_size
#pragma weak shmkit_value_create

#endif
