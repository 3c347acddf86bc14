"""Who may see and manage a task. Invisible tasks answer 404, so private tasks do not leak."""

from __future__ import annotations

from crowdseg.domain import Image, Role, Task, TaskStatus, User, Visibility
from crowdseg.errors import Forbidden, NotFound
from crowdseg.ports import Store


def manages(task: Task, user: User) -> bool:
    return task.owner_id == user.id or Role.ADMIN in user.roles


def sees(task: Task, user: User) -> bool:
    if manages(task, user):
        return True
    if task.status is TaskStatus.DRAFT:
        return False
    if user.link_task_id is not None:  # a study link's anonymous worker: that task, private or not, alone
        return task.id == user.link_task_id
    return task.visibility is Visibility.PUBLIC or user.id in task.members


async def visible_task(store: Store, task_id: str, user: User) -> Task:
    task = await store.tasks.get(task_id)
    if task is None or not sees(task, user):
        raise NotFound(f"task {task_id} not found")
    return task


async def managed_task(store: Store, task_id: str, user: User) -> Task:
    task = await visible_task(store, task_id, user)
    if not manages(task, user):
        raise Forbidden("only the task's owner or an admin may do this")
    return task


async def visible_image(store: Store, image_id: str, user: User) -> tuple[Image, Task]:
    image = await store.images.get(image_id)
    if image is None:
        raise NotFound(f"image {image_id} not found")
    task = await store.tasks.get(image.task_id)
    if task is None or not sees(task, user):
        raise NotFound(f"image {image_id} not found")
    return image, task


async def managed_image(store: Store, image_id: str, user: User) -> tuple[Image, Task]:
    image, task = await visible_image(store, image_id, user)
    if not manages(task, user):
        raise Forbidden("only the task's owner or an admin may do this")
    return image, task
